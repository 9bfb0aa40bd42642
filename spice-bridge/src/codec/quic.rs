//! Spice QUIC image payload (`SPICE_IMAGE_TYPE_QUIC` = 1, sheet `spice-protocol.md` §9.6):
//! encoder and strict decoder, lossless.
//!
//! # Sources
//!
//! The reference sheet's outline (§9.6) is not enough to interoperate, so the bit-level facts
//! below were established by *reading* spice-common's `common/quic.c`,
//! `common/quic_tmpl.c`, `common/quic_family_tmpl.c` and `common/canvas_base.c`
//! (`canvas_get_quic`) at commit de79bac8 (the QUIC decoder that spice-gtk 0.42 links). No code
//! was copied: this module is written from the fact sheet below. The only numbers taken over are
//! format constants the bitstream depends on (the wait-mask trigger table, the run-length state
//! table and the low 6 bits of the 256-entry pseudo-random table; higher bits are never used).
//!
//! # Fact sheet: the QUIC bitstream
//!
//! **Words and bits.** The stream is a sequence of 32-bit words, each stored little-endian.
//! Bits are written into a word most significant bit first; a code longer than the room left in
//! the current word continues at the top of the next one. Every value below is written as a
//! field of `len` bits, MSB first.
//!
//! **Header.** Five 32-bit fields: magic `0x43495551` ("QUIC" as LE bytes), version 0, image type
//! (GRAY 1, RGB16 2, RGB24 3, RGB32 4, RGBA 5), width, height. Width and height must be > 0 and
//! their product at most 2^29 - 1. spice-gtk decodes RGB32/RGB24 (to xRGB), RGB16 and RGBA (to
//! ARGB); GRAY is refused by the canvas. spice-server never sends QUIC for images narrower or
//! shorter than 3 pixels (`MIN_DIMENSION_TO_QUIC`); the format itself works for any size ≥ 1.
//!
//! **End of stream.** After the last code the encoder pads the current word with zero bits and
//! then appends one whole zero word. The decoder keeps a 32-bit look-ahead window and fetches
//! the next word only when a code runs past the window, so the extra word is what lets it
//! finish; `data_size` in the image body is `4 × number of words` (header words included).
//!
//! **Channels and their order.** RGB24/RGB32 carry three 8-bit channels coded *interleaved per
//! pixel*: for each pixel, R's code, then G's, then B's (the pad byte of RGB32 is not coded; the
//! decoder writes 0 there). All three share one adaptation state (wait counter, random seed,
//! wait-mask index, run-length state) but each has its own buckets and its own row of
//! residuals. RGBA codes, for each row, first the RGB row as above and then the alpha row alone
//! (one channel with its *own* state, buckets and residual row). RGB16 is the same as RGB with
//! 5 bits per channel (not produced here).
//!
//! **Prediction and residuals** (per channel, values 0..=255 for bpc 8). Row 0: pixel 0 is
//! predicted as 0, pixel x > 0 as its left neighbour `a`. Rows y > 0: pixel 0 as the pixel above
//! `b`, pixel x > 0 as `(a + b) >> 1`. The residual `(value − prediction) mod 256` is folded to
//! an unsigned "rank": `s ≤ 127 → 2s`, `s ≥ 128 → 2(255 − s) + 1` (small positive and negative
//! errors get small ranks). The decoder unfolds (`r even → r/2`, `r odd → 255 − r/2`) and adds
//! the prediction mod 256.
//!
//! **Contexts (buckets).** The context of a pixel's code is the rank of the pixel to its left in
//! the same channel (its entry in the channel's residual row at x − 1). Ranks are grouped into
//! buckets of doubling size (model evolution 3): {0}, {1,2}, {3..6}, {7..14}, {15..30},
//! {31..62}, {63..126}, {127..255}: bucket = min(7, floor(log2(rank + 1))). For x = 0 the left
//! entry is a virtual slot: 0 on row 0, and on later rows the rank that was stored at x = 0 on
//! the previous row. **The residual row persists from row to row and pixels coded by a run are
//! not written into it**, so after a run the context is whatever rank was left at x − 1 by an
//! earlier row: both sides must keep this exact behaviour.
//!
//! **Golomb-Rice code family** (bpc 8, code length limit 26). Code parameter `l` in 0..=7. Let
//! `p = min(26 − 8, 2^(8−l) − 1)` (18 for l ≤ 3, then 15, 7, 3, 1) and `g = p << l`. A rank
//! `n < g` is written as `n >> l` zero bits, a one bit, then the low `l` bits of `n`. A rank
//! `n ≥ g` is written as `p` zero bits then `n − g` in `ceil(log2(256 − g))` bits (the escape).
//! Decoding: if the 32-bit window has a one in its first `p` bits, count leading zeros `z` and
//! read `l` more bits after the one; otherwise it is an escape. (A malformed escape can exceed
//! 255; the reference decoder keeps the low 8 bits.)
//!
//! **Model.** Each bucket holds 8 counters (only the first 8 = bpc are used) and a best code,
//! initially 7, all counters 0. Updating a bucket with rank `n`: add to counter `k` the length
//! of `n`'s code with parameter `k`, for every `k`; the best code becomes the `k` with the
//! smallest counter, scanning from 7 down to 0 and switching only on a strictly smaller sum (so
//! ties keep the higher parameter); if that smallest sum exceeds the current `wm_trigger`, all
//! counters of the bucket are halved. The code parameter of a pixel is the best code of its
//! context bucket *at the time it is coded*.
//!
//! **When the model is updated (wait counts).** Not after every pixel. State per coding group:
//! `waitcnt` (0), `seed` (255), `wmidx` (0), `wmileft` (2048). The random source returns
//! `TABLE[(seed += 1) & 255]`. The wait mask is `2^wmidx − 1`; `wm_trigger` is
//! `[110, 550, 900, 800, 550, 400, 350]` indexed by `wmidx`. Each row is split into segments:
//! while `wmidx < 6` and `wmileft ≤` the pixels left in the row, a segment of `wmileft` pixels
//! (if non-zero) is coded, then `wmidx += 1` (new trigger) and `wmileft = 2048`; the rest of the
//! row is one last segment, after which `wmileft` decreases by its length while `wmidx < 6`.
//! Inside a segment `[start, end)` with mask `m`:
//! * if `start == 0`: code pixel 0; then if `waitcnt > 0` decrement it, else set
//!   `waitcnt = rand & m` and update the model at 0; `stop = 1 + waitcnt`;
//!   otherwise `stop = start + waitcnt`;
//! * while `stop < end`: code the pixels up to and including `stop`, update the model at
//!   `stop`, then `stop = (stop + 1) + (rand & m)`;
//! * code the remaining pixels up to `end`; `waitcnt = stop − end`.
//!
//! "Update the model at x" means, for each channel of the group in order, update the bucket of
//! the rank at x − 1 with the rank at x (from the residual row, whatever it holds).
//!
//! **Run mode** (rows > 0 only). Before coding pixel x of a segment, if the pixels above at x − 1
//! and x are equal (all channels of the group), `x > 2`, x is not the position where the
//! previous run of this segment ended (initially 0), and the two pixels to the left (x − 1,
//! x − 2) are equal, a run starts: `waitcnt = stop − x` is saved; the run length is the number of
//! pixels from x on equal to their left neighbour, stopping at the segment end; it is coded as
//! below; if the run reaches the end of the segment the segment is done (`waitcnt` as saved),
//! else coding resumes at the first differing pixel with `stop = x' + waitcnt` (no run can start
//! again at that pixel). Run pixels are copies of the left neighbour and produce no codes.
//!
//! **Run length code** (adaptive, per group state; `J` = [0,0,0,0,1,1,1,1,2,2,2,2,3,3,3,3,4,4,5,
//! 5,6,6,7,7,8,9,10,11,12,13,14,15], state index `k` from 0, `len = J[k]`, `order = 2^len`):
//! while the remaining length ≥ `order`: emit a one bit, subtract `order`, and if `k < 31`
//! advance `k`. Then emit a zero bit and the remainder in `len` bits; finally if `k > 0`,
//! step `k` back by one. The decoder mirrors this (it may read the one bits 8 at a time) and
//! rejects a length beyond the segment end.

//!
//! # How this was checked
//!
//! * spice-gtk 0.42 (`spicy-screenshot`) and spice-html5 draw a QUIC photo scene with flat
//!   areas (run mode) pixel for pixel (`tests/real_clients.rs`
//!   `spicy_screenshot_decodes_quic_pixel_for_pixel`, `tests/spice_html5.rs`
//!   `spice_html5_decodes_quic_pixel_for_pixel`); a one-character change to the model update
//!   or to the run-length state makes the spice-gtk test fail, though our own round trips
//!   still pass.
//! * Streams from the reference encoder (RGB24 59×24, RGBA 94×82) decode and re-encode
//!   byte-identical (`reference_streams_reencode_identically`, ignored, needs the files).
//! * Fact sheet correction: the reference sheet's §9.6 says channels are coded separately row
//!   by row; in fact RGB channels are interleaved per pixel (alpha alone per row, after RGB).

#![forbid(unsafe_code)]

use super::{CodecError, SourceFormat, SourceImage};

/// "QUIC" as a little-endian word.
pub const QUIC_MAGIC: u32 = 0x4349_5551;
/// Version word (major 0, minor 0).
pub const QUIC_VERSION: u32 = 0;
/// spice-server sends QUIC only for images at least this wide and tall.
pub const MIN_DIMENSION: u32 = 3;
/// The reference decoder refuses images of more pixels than this.
pub const MAX_PIXELS: u64 = 512 * 1024 * 1024 - 1;

/// QUIC image types (header word 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicImageType {
    /// One 8-bit channel.
    Gray = 1,
    /// x1r5g5b5.
    Rgb16 = 2,
    /// B, G, R bytes.
    Rgb24 = 3,
    /// B, G, R, pad bytes.
    Rgb32 = 4,
    /// B, G, R, A bytes.
    Rgba = 5,
}

impl QuicImageType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Gray,
            2 => Self::Rgb16,
            3 => Self::Rgb24,
            4 => Self::Rgb32,
            5 => Self::Rgba,
            _ => return None,
        })
    }
}

/// Low 6 bits of the format's 256-entry pseudo-random table (wait counts are masked with at most
/// 63, so only these bits matter).
const RAND6: [u8; 256] = [
    2, 23, 19, 21, 7, 18, 40, 14, 12, 32, 47, 44, 36, 6, 18, 11, 4, 19, 42, 29, 16, 63, 57, 51, 16,
    3, 5, 14, 15, 30, 20, 9, 36, 45, 3, 57, 61, 0, 8, 5, 41, 14, 43, 27, 43, 59, 31, 35, 39, 60,
    42, 38, 13, 54, 62, 1, 26, 3, 11, 61, 52, 34, 7, 48, 4, 59, 22, 12, 22, 8, 50, 4, 10, 6, 44, 8,
    11, 46, 31, 51, 53, 17, 1, 43, 46, 60, 36, 54, 10, 27, 39, 44, 22, 41, 23, 2, 44, 0, 40, 53,
    40, 48, 16, 43, 32, 28, 33, 12, 20, 2, 56, 62, 55, 58, 18, 20, 13, 55, 38, 29, 57, 19, 49, 33,
    47, 63, 59, 0, 35, 61, 19, 25, 46, 38, 60, 4, 35, 1, 26, 40, 28, 10, 5, 14, 25, 18, 48, 49, 20,
    59, 62, 34, 46, 7, 33, 52, 34, 58, 9, 29, 8, 55, 62, 60, 37, 36, 37, 50, 6, 3, 10, 28, 48, 24,
    26, 61, 57, 30, 11, 54, 2, 6, 50, 47, 7, 17, 35, 53, 32, 12, 23, 17, 5, 21, 49, 55, 51, 45, 52,
    27, 39, 25, 39, 63, 22, 24, 42, 52, 56, 38, 41, 41, 56, 32, 13, 24, 26, 51, 27, 56, 58, 37, 24,
    42, 15, 28, 17, 30, 31, 15, 16, 23, 25, 54, 33, 34, 1, 29, 31, 50, 53, 21, 49, 15, 47, 9, 0,
    58, 37, 45, 30, 13, 9, 45, 63, 21,
];

/// `wm_trigger` by wait-mask index (model evolution 3).
const WM_TRIGGER: [u32; 7] = [110, 550, 900, 800, 550, 400, 350];
/// Highest wait-mask index.
const WMI_MAX: u32 = 6;
/// Pixels coded before the wait-mask index grows.
const WMI_NEXT: u32 = 2048;
/// Run-length code: bits of the remainder per state.
const MELC_J: [u32; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];
/// Bits per channel (only 8 is implemented).
const BPC: u32 = 8;
/// Code length limit of the Golomb family.
const CODE_LIMIT: u32 = 26;

#[inline]
const fn mask(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        u32::MAX >> (32 - n)
    }
}

const fn ceil_log2(v: u32) -> u32 {
    if v <= 1 {
        0
    } else {
        32 - (v - 1).leading_zeros()
    }
}

/// The Golomb-Rice family for 8 bits per channel.
struct Family {
    /// Ranks below this are plain Golomb-Rice codes, per parameter.
    n_gr: [u32; 8],
    /// Zero-prefix length of the escape.
    prefix: [u32; 8],
    /// Escape suffix length.
    suffix: [u32; 8],
    /// Code length of each rank per parameter.
    len: [[u8; 8]; 256],
}

const FAMILY: Family = Family::new();

impl Family {
    const fn new() -> Self {
        let mut f = Family {
            n_gr: [0; 8],
            prefix: [0; 8],
            suffix: [0; 8],
            len: [[0; 8]; 256],
        };
        let mut l = 0;
        while l < BPC {
            let mut p = CODE_LIMIT - BPC;
            if p > mask(BPC - l) {
                p = mask(BPC - l);
            }
            let g = p << l;
            f.n_gr[l as usize] = g;
            f.prefix[l as usize] = p;
            f.suffix[l as usize] = ceil_log2((1 << BPC) - g);
            let mut n = 0u32;
            while n < 256 {
                f.len[n as usize][l as usize] = if n < g {
                    ((n >> l) + l + 1) as u8
                } else {
                    (p + f.suffix[l as usize]) as u8
                };
                n += 1;
            }
            l += 1;
        }
        f
    }
}

#[inline]
const fn fold(s: u8) -> u8 {
    if s <= 127 {
        s << 1
    } else {
        ((255 - s) << 1) + 1
    }
}

#[inline]
const fn unfold(r: u8) -> u8 {
    if r & 1 == 1 {
        255 - (r >> 1)
    } else {
        r >> 1
    }
}

#[inline]
fn bucket_of(rank: u8) -> usize {
    let b = 31 - (u32::from(rank) + 1).leading_zeros();
    (b as usize).min(BPC as usize - 1)
}

// ---------------------------------------------------------------------------------------------
// Bit I/O
// ---------------------------------------------------------------------------------------------

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    word: u32,
    /// Free bits left in `word` (1..=32 while a word is open, 0 when full but not yet emitted).
    free: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            word: 0,
            free: 32,
        }
    }

    /// Writes the low `len` bits of `bits` (1 ≤ len ≤ 31), MSB first.
    #[inline]
    fn put(&mut self, bits: u32, len: u32) {
        debug_assert!(len > 0 && len < 32 && bits & !mask(len) == 0);
        if len <= self.free {
            self.free -= len;
            self.word |= bits << self.free;
            return;
        }
        let over = len - self.free;
        self.word |= bits >> over;
        self.out.extend_from_slice(&self.word.to_le_bytes());
        self.free = 32 - over;
        self.word = bits << self.free;
    }

    fn put32(&mut self, w: u32) {
        self.put(w >> 16, 16);
        self.put(w & 0xffff, 16);
    }

    fn put_ones(&mut self, n: u32) {
        for _ in 0..n / 32 {
            self.put32(u32::MAX);
        }
        let r = n % 32;
        if r > 0 {
            self.put(mask(r), r);
        }
    }

    /// Pads the open word with zeros and appends one zero word (see "End of stream").
    fn finish(mut self) {
        if self.free > 0 && self.free != 32 {
            self.put(0, self.free);
        }
        self.put32(0);
        // The reference encoder then opens a new word with one more bit, which pushes the zero
        // word out; the opened word itself is never written.
        self.put(0, 1);
    }
}

/// Errors found while decoding a QUIC payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The data ended before the image was complete (or is not whole words).
    #[error("QUIC data truncated")]
    Truncated,
    /// Wrong magic word.
    #[error("bad QUIC magic {0:#010x}")]
    BadMagic(u32),
    /// Unknown version.
    #[error("unsupported QUIC version {0:#x}")]
    BadVersion(u32),
    /// Unknown image type, or one this decoder does not handle (GRAY, RGB16).
    #[error("unsupported QUIC image type {0}")]
    BadType(u32),
    /// Width or height is 0, or differs from the image descriptor.
    #[error("QUIC size {width}x{height} does not match the descriptor {want_width}x{want_height}")]
    BadSize {
        /// In the stream.
        width: u32,
        /// In the stream.
        height: u32,
        /// Expected.
        want_width: u32,
        /// Expected.
        want_height: u32,
    },
    /// More pixels than the caller allows (or than the reference decoder accepts).
    #[error("QUIC image of {0} pixels is over the limit")]
    TooLarge(u64),
    /// A run goes past the end of its segment.
    #[error("QUIC run length past the end of the row segment")]
    BadRun,
}

struct BitReader<'a> {
    data: &'a [u8],
    /// Byte offset of the next word to fetch.
    pos: usize,
    /// The next 32 bits of the stream, first bit at the top.
    word: u32,
    /// The last word fetched.
    next: u32,
    /// Bits of `next` not yet shifted into `word`.
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Result<Self, QuicError> {
        let mut r = Self {
            data,
            pos: 0,
            word: 0,
            next: 0,
            avail: 0,
        };
        r.next = r.fetch()?;
        r.word = r.next;
        Ok(r)
    }

    fn fetch(&mut self) -> Result<u32, QuicError> {
        let b = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or(QuicError::Truncated)?;
        self.pos += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Consumes `len` bits (1 ≤ len ≤ 31); fetches a word only when the window needs it.
    #[inline]
    fn eat(&mut self, len: u32) -> Result<(), QuicError> {
        debug_assert!(len > 0 && len < 32);
        self.word <<= len;
        if self.avail >= len {
            self.avail -= len;
            self.word |= self.next.checked_shr(self.avail).unwrap_or(0);
            return Ok(());
        }
        let short = len - self.avail;
        self.word |= self.next << short;
        self.next = self.fetch()?;
        self.avail = 32 - short;
        self.word |= self.next >> self.avail;
        Ok(())
    }

    fn eat32(&mut self) -> Result<u32, QuicError> {
        let w = self.word;
        self.eat(16)?;
        self.eat(16)?;
        Ok(w)
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Bucket {
    counters: [u32; 8],
    best: u8,
}

impl Bucket {
    const INIT: Self = Self {
        counters: [0; 8],
        best: BPC as u8 - 1,
    };

    fn update(&mut self, rank: u8, trigger: u32) {
        let lens = &FAMILY.len[rank as usize];
        let mut best = BPC as usize - 1;
        self.counters[best] += u32::from(lens[best]);
        let mut best_len = self.counters[best];
        for k in (0..BPC as usize - 1).rev() {
            self.counters[k] += u32::from(lens[k]);
            if self.counters[k] < best_len {
                best = k;
                best_len = self.counters[k];
            }
        }
        self.best = best as u8;
        if best_len > trigger {
            for c in &mut self.counters {
                *c >>= 1;
            }
        }
    }
}

/// One channel: its buckets and its residual (rank) row. `ranks[x + 1]` is the rank at x;
/// `ranks[0]` is the virtual slot left of x = 0.
struct Channel {
    buckets: [Bucket; 8],
    ranks: Vec<u8>,
}

/// Adaptation state shared by the channels of a group.
struct State {
    waitcnt: u32,
    seed: u32,
    wmidx: u32,
    wmileft: u32,
    melc_state: usize,
    melc_len: u32,
    melc_order: u32,
}

impl State {
    fn new() -> Self {
        Self {
            waitcnt: 0,
            seed: 0xff,
            wmidx: 0,
            wmileft: WMI_NEXT,
            melc_state: 0,
            melc_len: MELC_J[0],
            melc_order: 1 << MELC_J[0],
        }
    }

    #[inline]
    fn rand(&mut self) -> u32 {
        self.seed = self.seed.wrapping_add(1);
        u32::from(RAND6[(self.seed & 0xff) as usize])
    }

    fn trigger(&self) -> u32 {
        WM_TRIGGER[self.wmidx.min(WMI_MAX) as usize]
    }

    fn melc_up(&mut self) {
        if self.melc_state < MELC_J.len() - 1 {
            self.melc_state += 1;
            self.melc_len = MELC_J[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }

    fn melc_down(&mut self) {
        if self.melc_state > 0 {
            self.melc_state -= 1;
            self.melc_len = MELC_J[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }
}

/// Encoding or decoding: the only two places where the directions differ.
trait Mode {
    /// Codes one channel value with prediction `pred` and code parameter `l`; returns its rank.
    /// The encoder reads `*value`, the decoder writes it.
    fn value(&mut self, value: &mut u8, pred: u8, l: u8) -> Result<u8, QuicError>;
    /// Codes a run starting at `x` (bounded by `end`); returns the first pixel after it. The
    /// encoder measures it in `row`, the decoder fills `row`.
    fn run<const N: usize>(
        &mut self,
        state: &mut State,
        row: &mut [[u8; N]],
        x: usize,
        end: usize,
    ) -> Result<usize, QuicError>;
}

struct Enc<'a, 'b>(&'b mut BitWriter<'a>);

impl Mode for Enc<'_, '_> {
    #[inline]
    fn value(&mut self, value: &mut u8, pred: u8, l: u8) -> Result<u8, QuicError> {
        let rank = fold(value.wrapping_sub(pred));
        let (n, l) = (u32::from(rank), u32::from(l));
        if n < FAMILY.n_gr[l as usize] {
            self.0.put((1 << l) | (n & mask(l)), (n >> l) + l + 1);
        } else {
            let len = FAMILY.prefix[l as usize] + FAMILY.suffix[l as usize];
            self.0.put(n - FAMILY.n_gr[l as usize], len);
        }
        Ok(rank)
    }

    fn run<const N: usize>(
        &mut self,
        state: &mut State,
        row: &mut [[u8; N]],
        x: usize,
        end: usize,
    ) -> Result<usize, QuicError> {
        let mut i = x;
        while i < end && row[i] == row[i - 1] {
            i += 1;
        }
        let mut left = (i - x) as u32;
        let mut hits = 0;
        while left >= state.melc_order {
            hits += 1;
            left -= state.melc_order;
            state.melc_up();
        }
        self.0.put_ones(hits);
        self.0.put(left, state.melc_len + 1);
        state.melc_down();
        Ok(i)
    }
}

struct Dec<'a, 'b>(&'b mut BitReader<'a>);

impl Mode for Dec<'_, '_> {
    #[inline]
    fn value(&mut self, value: &mut u8, pred: u8, l: u8) -> Result<u8, QuicError> {
        let bits = self.0.word;
        let l = u32::from(l);
        let (n, len) = if bits > mask(32 - FAMILY.prefix[l as usize]) {
            let z = bits.leading_zeros();
            let len = z + 1 + l;
            ((z << l) | ((bits >> (32 - len)) & mask(l)), len)
        } else {
            let len = FAMILY.prefix[l as usize] + FAMILY.suffix[l as usize];
            let suffix = (bits >> (32 - len)) & mask(FAMILY.suffix[l as usize]);
            (FAMILY.n_gr[l as usize] + suffix, len)
        };
        self.0.eat(len)?;
        let rank = n as u8; // the reference decoder keeps the low 8 bits of a bad escape
        *value = unfold(rank).wrapping_add(pred);
        Ok(rank)
    }

    fn run<const N: usize>(
        &mut self,
        state: &mut State,
        row: &mut [[u8; N]],
        x: usize,
        end: usize,
    ) -> Result<usize, QuicError> {
        let limit = (end - x) as u64;
        let mut len: u64 = 0;
        loop {
            let ones = (!(self.0.word >> 24) as u8).leading_zeros();
            for _ in 0..ones {
                len += u64::from(state.melc_order);
                state.melc_up();
            }
            if len > limit {
                return Err(QuicError::BadRun);
            }
            if ones != 8 {
                self.0.eat(ones + 1)?;
                break;
            }
            self.0.eat(8)?;
        }
        if state.melc_len > 0 {
            len += u64::from(self.0.word >> (32 - state.melc_len));
            self.0.eat(state.melc_len)?;
        }
        state.melc_down();
        if len > limit {
            return Err(QuicError::BadRun);
        }
        let stop = x + len as usize;
        for i in x..stop {
            row[i] = row[i - 1];
        }
        Ok(stop)
    }
}

/// A group of channels coded together (RGB: N = 3 in the order R, G, B; alpha: N = 1).
struct Group<const N: usize> {
    ch: [Channel; N],
    state: State,
}

impl<const N: usize> Group<N> {
    fn new(width: usize) -> Self {
        Self {
            ch: std::array::from_fn(|_| Channel {
                buckets: [Bucket::INIT; 8],
                ranks: vec![0; width + 1],
            }),
            state: State::new(),
        }
    }

    /// Codes one pixel at `x` of `cur` (all channels, in order).
    #[inline]
    fn pixel<M: Mode>(
        &mut self,
        m: &mut M,
        prev: Option<&[[u8; N]]>,
        cur: &mut [[u8; N]],
        x: usize,
    ) -> Result<(), QuicError> {
        for c in 0..N {
            let pred = match (prev, x) {
                (None, 0) => 0,
                (None, _) => cur[x - 1][c],
                (Some(p), 0) => p[0][c],
                (Some(p), _) => ((u32::from(cur[x - 1][c]) + u32::from(p[x][c])) >> 1) as u8,
            };
            let ch = &mut self.ch[c];
            let l = ch.buckets[bucket_of(ch.ranks[x])].best;
            ch.ranks[x + 1] = m.value(&mut cur[x][c], pred, l)?;
        }
        Ok(())
    }

    fn update_model(&mut self, x: usize) {
        let trigger = self.state.trigger();
        for ch in &mut self.ch {
            let (ctx, rank) = (ch.ranks[x], ch.ranks[x + 1]);
            ch.buckets[bucket_of(ctx)].update(rank, trigger);
        }
    }

    /// Codes one row; `prev` is `None` for row 0.
    fn row<M: Mode>(
        &mut self,
        m: &mut M,
        prev: Option<&[[u8; N]]>,
        cur: &mut [[u8; N]],
    ) -> Result<(), QuicError> {
        for ch in &mut self.ch {
            ch.ranks[0] = if prev.is_some() { ch.ranks[1] } else { 0 };
        }
        let mut left = cur.len() as u32;
        let mut pos = 0usize;
        while self.state.wmidx < WMI_MAX && self.state.wmileft <= left {
            if self.state.wmileft > 0 {
                let n = self.state.wmileft;
                self.segment(m, prev, cur, pos, pos + n as usize)?;
                left -= n;
                pos += n as usize;
            }
            self.state.wmidx += 1;
            self.state.wmileft = WMI_NEXT;
        }
        if left > 0 {
            self.segment(m, prev, cur, pos, pos + left as usize)?;
            if self.state.wmidx < WMI_MAX {
                self.state.wmileft -= left;
            }
        }
        Ok(())
    }

    fn run_starts(prev: &[[u8; N]], cur: &[[u8; N]], x: usize, run_start: usize) -> bool {
        x > 2 && prev[x - 1] == prev[x] && run_start != x && cur[x - 1] == cur[x - 2]
    }

    fn segment<M: Mode>(
        &mut self,
        m: &mut M,
        prev: Option<&[[u8; N]]>,
        cur: &mut [[u8; N]],
        start: usize,
        end: usize,
    ) -> Result<(), QuicError> {
        let wmask = mask(self.state.wmidx) as usize;
        let mut x = start;
        let mut stop;
        if x == 0 {
            self.pixel(m, prev, cur, 0)?;
            if self.state.waitcnt > 0 {
                self.state.waitcnt -= 1;
            } else {
                self.state.waitcnt = self.state.rand() & wmask as u32;
                self.update_model(0);
            }
            x = 1;
            stop = 1 + self.state.waitcnt as usize;
        } else {
            stop = x + self.state.waitcnt as usize;
        }
        // Where the last run of this segment started (a run cannot start there again).
        let mut run_start = 0usize;
        loop {
            let mut run = false;
            'coding: {
                while stop < end {
                    while x <= stop {
                        if let Some(p) = prev {
                            if Self::run_starts(p, cur, x, run_start) {
                                run = true;
                                break 'coding;
                            }
                        }
                        self.pixel(m, prev, cur, x)?;
                        x += 1;
                    }
                    self.update_model(stop);
                    stop = x + (self.state.rand() as usize & wmask);
                }
                while x < end {
                    if let Some(p) = prev {
                        if Self::run_starts(p, cur, x, run_start) {
                            run = true;
                            break 'coding;
                        }
                    }
                    self.pixel(m, prev, cur, x)?;
                    x += 1;
                }
            }
            if !run {
                self.state.waitcnt = (stop - end) as u32;
                return Ok(());
            }
            self.state.waitcnt = (stop - x) as u32;
            run_start = x;
            x = m.run(&mut self.state, cur, x, end)?;
            if x == end {
                return Ok(());
            }
            stop = x + self.state.waitcnt as usize;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The QUIC image type used for a source format, if QUIC can carry it here (RGB16 is not
/// implemented: it needs the 5-bit family).
pub fn quic_type_for(format: SourceFormat) -> Option<QuicImageType> {
    match format {
        SourceFormat::Xrgb32 => Some(QuicImageType::Rgb32),
        SourceFormat::Argb32 => Some(QuicImageType::Rgba),
        SourceFormat::Rgb24 => Some(QuicImageType::Rgb24),
        SourceFormat::Rgb16 => None,
    }
}

/// Appends the QUIC data for `src` (header words, codes, end-of-stream words) to `out`:
/// Xrgb32 as RGB32, Argb32 as RGBA, Rgb24 as RGB24. Rgb16 is refused. Any size ≥ 1×1 is
/// encoded (the caller decides about the 3-pixel minimum spice-server applies).
pub fn encode_into(src: &SourceImage<'_>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let row_len = src.validate()?;
    let ty = quic_type_for(src.format).ok_or(CodecError::UnsupportedFormat {
        codec: super::ImageCodec::Quic,
        format: src.format,
    })?;
    if src.pixel_count() > MAX_PIXELS {
        return Err(CodecError::TooLarge {
            width: src.width,
            height: src.height,
        });
    }
    let width = src.width as usize;
    let bpp = src.format.bytes_per_pixel();
    let mut w = BitWriter::new(out);
    for v in [QUIC_MAGIC, QUIC_VERSION, ty as u32, src.width, src.height] {
        w.put32(v);
    }
    let mut rgb = Group::<3>::new(width);
    let mut alpha = (ty == QuicImageType::Rgba).then(|| Group::<1>::new(width));
    let mut prev_rgb = vec![[0u8; 3]; width];
    let mut cur_rgb = vec![[0u8; 3]; width];
    let mut prev_a = vec![[0u8; 1]; width];
    let mut cur_a = vec![[0u8; 1]; width];
    let mut m = Enc(&mut w);
    for y in 0..src.height as usize {
        let row = src.row(y, row_len);
        for (x, p) in row.chunks_exact(bpp).enumerate() {
            cur_rgb[x] = [p[2], p[1], p[0]];
            if bpp == 4 {
                cur_a[x] = [p[3]];
            }
        }
        let prev = (y > 0).then_some(&prev_rgb[..]);
        // Encoding never fails: only the decoder reports errors.
        let _ = rgb.row(&mut m, prev, &mut cur_rgb);
        if let Some(a) = alpha.as_mut() {
            let prev = (y > 0).then_some(&prev_a[..]);
            let _ = a.row(&mut m, prev, &mut cur_a);
        }
        std::mem::swap(&mut prev_rgb, &mut cur_rgb);
        std::mem::swap(&mut prev_a, &mut cur_a);
    }
    w.finish();
    Ok(())
}

/// The QUIC data for `src` (see [`encode_into`]).
pub fn encode(src: &SourceImage<'_>) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(src, &mut out)?;
    Ok(out)
}

/// A decoded QUIC image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedQuic {
    /// Type from the header.
    pub image_type: QuicImageType,
    /// width × height pixels, top row first, as 0xAARRGGBB; A = 0 for RGB24/RGB32 (spice-gtk
    /// writes 0 into the pad byte), the alpha for RGBA.
    pub pixels: Vec<u32>,
}

/// Decodes QUIC `data` (without the `data_size` word) of an image the descriptor says is
/// `width` × `height`, the way spice-gtk's `canvas_get_quic` does: the header must match the
/// descriptor, RGB32/RGB24/RGBA only, and reading a word past the end of `data` is an error.
/// Trailing words are ignored. `max_pixels` bounds the allocation before it happens. Never
/// panics.
pub fn decode(
    data: &[u8],
    width: u32,
    height: u32,
    max_pixels: usize,
) -> Result<DecodedQuic, QuicError> {
    let data = &data[..data.len() & !3];
    let mut r = BitReader::new(data)?;
    let magic = r.eat32()?;
    if magic != QUIC_MAGIC {
        return Err(QuicError::BadMagic(magic));
    }
    let version = r.eat32()?;
    if version != QUIC_VERSION {
        return Err(QuicError::BadVersion(version));
    }
    let ty_word = r.eat32()?;
    let w = r.eat32()?;
    let h = r.eat32()?;
    // The reference decoder reads width and height as signed ints.
    if w == 0 || h == 0 || w > i32::MAX as u32 || h > i32::MAX as u32 || w != width || h != height {
        return Err(QuicError::BadSize {
            width: w,
            height: h,
            want_width: width,
            want_height: height,
        });
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS || pixels > max_pixels as u64 {
        return Err(QuicError::TooLarge(pixels));
    }
    let ty = match QuicImageType::from_u32(ty_word) {
        Some(t @ (QuicImageType::Rgb32 | QuicImageType::Rgb24 | QuicImageType::Rgba)) => t,
        _ => return Err(QuicError::BadType(ty_word)),
    };
    let width = w as usize;
    let mut out = Vec::with_capacity(pixels as usize);
    let mut rgb = Group::<3>::new(width);
    let mut alpha = (ty == QuicImageType::Rgba).then(|| Group::<1>::new(width));
    let mut prev_rgb = vec![[0u8; 3]; width];
    let mut cur_rgb = vec![[0u8; 3]; width];
    let mut prev_a = vec![[0u8; 1]; width];
    let mut cur_a = vec![[0u8; 1]; width];
    let mut m = Dec(&mut r);
    for y in 0..h as usize {
        let prev = (y > 0).then_some(&prev_rgb[..]);
        rgb.row(&mut m, prev, &mut cur_rgb)?;
        if let Some(a) = alpha.as_mut() {
            let prev = (y > 0).then_some(&prev_a[..]);
            a.row(&mut m, prev, &mut cur_a)?;
        }
        out.extend(cur_rgb.iter().zip(&cur_a).map(|([r, g, b], [a])| {
            let a = if alpha.is_some() { *a } else { 0 };
            u32::from_be_bytes([a, *r, *g, *b])
        }));
        std::mem::swap(&mut prev_rgb, &mut cur_rgb);
        std::mem::swap(&mut prev_a, &mut cur_a);
    }
    Ok(DecodedQuic {
        image_type: ty,
        pixels: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, mut f: impl FnMut(u32, u32) -> [u8; 4]) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y));
            }
        }
        v
    }

    fn expect(data: &[u8], format: SourceFormat) -> Vec<u32> {
        data.chunks_exact(4)
            .map(|p| {
                let a = if format == SourceFormat::Argb32 {
                    p[3]
                } else {
                    0
                };
                u32::from_be_bytes([a, p[2], p[1], p[0]])
            })
            .collect()
    }

    fn roundtrip(w: u32, h: u32, format: SourceFormat, data: &[u8]) -> usize {
        let src = SourceImage {
            data,
            width: w,
            height: h,
            stride: w as usize * 4,
            format,
        };
        let enc = encode(&src).unwrap();
        assert_eq!(enc.len() % 4, 0);
        let dec = decode(&enc, w, h, 1 << 24).unwrap();
        assert_eq!(dec.pixels, expect(data, format), "{w}x{h} {format:?}");
        // The decoder needs every word the encoder wrote (no slack beyond the flush word).
        assert_eq!(
            decode(&enc[..enc.len() - 4], w, h, 1 << 24),
            Err(QuicError::Truncated),
            "{w}x{h}"
        );
        enc.len()
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    /// Streams written by the reference C encoder (for example spice-common's
    /// `tests/fuzzer-quic-testcases/*.quic`, not committed here: LGPL data) decode, and our
    /// encoder re-encodes the decoded pixels to the same bytes. Run:
    /// `QUIC_REFERENCE_DIR=/path cargo test -p spice-bridge --lib reference_streams -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn reference_streams_reencode_identically() {
        let Ok(dir) = std::env::var("QUIC_REFERENCE_DIR") else {
            return;
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "quic"))
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
            let (ty, w, h) = (word(8), word(12), word(16));
            let dec = match decode(&data, w, h, 1 << 24) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{f:?}: type {ty} {w}x{h}: {e}");
                    continue;
                }
            };
            let format = match dec.image_type {
                QuicImageType::Rgba => SourceFormat::Argb32,
                QuicImageType::Rgb24 => SourceFormat::Rgb24,
                _ => SourceFormat::Xrgb32,
            };
            let bpp = format.bytes_per_pixel();
            let bytes: Vec<u8> = dec
                .pixels
                .iter()
                .flat_map(|p| p.to_le_bytes().into_iter().take(bpp))
                .collect();
            let src = SourceImage {
                data: &bytes,
                width: w,
                height: h,
                stride: w as usize * bpp,
                format,
            };
            let enc = encode(&src).unwrap();
            let same = data.starts_with(&enc);
            eprintln!(
                "{f:?}: type {ty} {w}x{h}: decoded; re-encoded {} bytes of {}: {}",
                enc.len(),
                data.len(),
                if same { "identical" } else { "DIFFERENT" }
            );
            assert!(same, "{f:?}");
        }
    }

    #[test]
    fn family_tables() {
        assert_eq!(FAMILY.prefix, [18, 18, 18, 18, 15, 7, 3, 1]);
        assert_eq!(FAMILY.n_gr, [18, 36, 72, 144, 240, 224, 192, 128]);
        assert_eq!(FAMILY.suffix, [8, 8, 8, 7, 4, 5, 6, 7]);
        for l in 0..8 {
            assert!(FAMILY.len.iter().all(|r| r[l] as u32 <= CODE_LIMIT));
        }
        assert_eq!(
            (0..=255u8).map(bucket_of).collect::<Vec<_>>()[..16],
            [0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4]
        );
        assert_eq!(bucket_of(126), 6);
        assert_eq!(bucket_of(127), 7);
        assert_eq!(bucket_of(255), 7);
        for s in 0..=255u8 {
            assert_eq!(unfold(fold(s)), s);
        }
        assert_eq!(fold(255), 1);
        assert_eq!(fold(1), 2);
    }

    #[test]
    fn header_and_flush() {
        let data = img(3, 3, |_, _| [0, 0, 0, 0]);
        let src = SourceImage {
            data: &data,
            width: 3,
            height: 3,
            stride: 12,
            format: SourceFormat::Xrgb32,
        };
        let enc = encode(&src).unwrap();
        assert_eq!(&enc[0..4], b"QUIC");
        assert_eq!(&enc[4..8], &[0, 0, 0, 0]);
        assert_eq!(&enc[8..12], &[4, 0, 0, 0]);
        assert_eq!(&enc[12..20], &[3, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&enc[enc.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn roundtrip_shapes() {
        let mut rng = Lcg(7);
        for (w, h) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (2, 2),
            (3, 3),
            (5, 7),
            (17, 3),
            (3, 17),
            (64, 64),
            (2049, 3),
            (4200, 2),
        ] {
            for format in [SourceFormat::Xrgb32, SourceFormat::Argb32] {
                let noise = img(w, h, |_, _| {
                    let v = rng.next().to_le_bytes();
                    [v[0], v[1], v[2], v[3]]
                });
                roundtrip(w, h, format, &noise);
                let grad = img(w, h, |x, y| {
                    [(x * 3) as u8, (y * 5) as u8, (x + y) as u8, 255]
                });
                roundtrip(w, h, format, &grad);
                let flat = img(w, h, |x, _| {
                    if x < w / 2 {
                        [9, 9, 9, 0]
                    } else {
                        [1, 2, 3, 4]
                    }
                });
                roundtrip(w, h, format, &flat);
            }
        }
    }

    #[test]
    fn runs_compress_flat_areas() {
        let (w, h) = (300, 200);
        let flat = img(w, h, |x, y| {
            if (x / 50 + y / 50) % 2 == 0 {
                [10, 20, 30, 0]
            } else {
                [200, 100, 50, 0]
            }
        });
        let n = roundtrip(w, h, SourceFormat::Xrgb32, &flat);
        assert!(n < (w * h) as usize / 8, "flat picture took {n} bytes");
        // Runs interrupted by single pixels, runs ending at segment ends (width 2048+).
        let mut rng = Lcg(3);
        for w in [50, 2048, 2100] {
            let sparse = img(w, 6, |_, _| {
                if rng.next() % 40 == 0 {
                    [rng.next() as u8, 1, 2, 3]
                } else {
                    [5, 5, 5, 5]
                }
            });
            roundtrip(w, 6, SourceFormat::Xrgb32, &sparse);
            roundtrip(w, 6, SourceFormat::Argb32, &sparse);
        }
    }

    #[test]
    fn photo_like_and_test_images() {
        let mut rng = Lcg(11);
        let (w, h) = (320, 240);
        let photo = img(w, h, |x, y| {
            let n = rng.next() % 7;
            [
                ((x * 255 / w) + n) as u8,
                ((y * 255 / h) + n) as u8,
                (((x + y) / 3) + n) as u8,
                0,
            ]
        });
        let n = roundtrip(w, h, SourceFormat::Xrgb32, &photo);
        assert!(n < (w * h * 4) as usize / 2, "photo-like took {n} bytes");
    }

    #[test]
    fn rgb24_source() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 251) as u8).collect();
        let src = SourceImage {
            data: &data,
            width: 5,
            height: 4,
            stride: 15,
            format: SourceFormat::Rgb24,
        };
        let enc = encode(&src).unwrap();
        let dec = decode(&enc, 5, 4, 100).unwrap();
        assert_eq!(dec.image_type, QuicImageType::Rgb24);
        let want: Vec<u32> = data
            .chunks_exact(3)
            .map(|p| u32::from_be_bytes([0, p[2], p[1], p[0]]))
            .collect();
        assert_eq!(dec.pixels, want);
    }

    #[test]
    fn decoder_rejects_garbage() {
        assert_eq!(decode(&[], 1, 1, 10), Err(QuicError::Truncated));
        assert_eq!(decode(b"QUIX", 1, 1, 10), Err(QuicError::Truncated));
        assert_eq!(
            decode(b"QUIX\0\0\0\0", 1, 1, 10),
            Err(QuicError::BadMagic(0x5849_5551))
        );
        let data = img(4, 4, |x, y| [x as u8, y as u8, 0, 0]);
        let src = SourceImage {
            data: &data,
            width: 4,
            height: 4,
            stride: 16,
            format: SourceFormat::Xrgb32,
        };
        let enc = encode(&src).unwrap();
        assert!(matches!(
            decode(&enc, 4, 5, 100),
            Err(QuicError::BadSize { .. })
        ));
        assert_eq!(decode(&enc, 4, 4, 15), Err(QuicError::TooLarge(16)));
        let mut bad = enc.clone();
        bad[8] = 1; // GRAY
        assert_eq!(decode(&bad, 4, 4, 100), Err(QuicError::BadType(1)));
        // Every truncation and many bit flips: no panic.
        for n in 0..enc.len() {
            let _ = decode(&enc[..n], 4, 4, 100);
        }
        let mut rng = Lcg(5);
        for _ in 0..2000 {
            let mut b = enc.clone();
            let i = 20 + rng.next() as usize % (b.len() - 20);
            b[i] ^= 1 << (rng.next() % 8);
            let _ = decode(&b, 4, 4, 100);
        }
        // A run of ones (huge run length) is refused, not looped on.
        let mut ones = enc[..20].to_vec();
        ones[8] = 4;
        ones.extend(std::iter::repeat_n(0xff, 4096));
        let _ = decode(&ones, 4, 4, 100);
    }
}
