//! Guest commands → validated Rust values (reference qxl-device.md §7, §9).
//!
//! CONTRACT with the device core (which pops rings and calls these):
//! - [`decode_display`] for every command-ring entry, [`decode_cursor`] for every cursor-ring
//!   entry, [`decode_monitors_config`] for MONITORS_CONFIG_ASYNC, [`validate_surface`] for
//!   CREATE_PRIMARY. Each copies every guest struct once, then validates; errors name the
//!   offending value. The release_info (first 8 bytes of every command) is handled by the
//!   device core, not here.
//! - Nothing here panics on any guest input.
//!
//! Pixel data of bitmaps is not copied while decoding: a decoded [`Bitmap`] holds the
//! validated list of guest ranges ([`GuestChunks`]) and the renderer (or the Spice bridge, via
//! [`Bitmap::load`] / [`Bitmap::to_argb`] / [`DisplayCommand::load_pixels`]) copies the rows once, straight into their
//! destination. Every size, count and address used to find those bytes was copied and
//! validated here; the pixel values themselves are not trusted for anything.

#[cfg(any(test, feature = "test-utils"))]
pub mod build;
mod chunks;
mod cursor;
mod draw;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzz;
mod image;
mod monitors;
mod surface;
#[cfg(any(test, feature = "test-utils"))]
pub mod testmem;

pub use chunks::GuestChunks;
pub use cursor::{Cursor, CursorCommand, CursorKind};
pub use draw::{
    Brush, Clip, ClipRects, CompositeOp, DrawOp, Drawable, Glyph, GlyphString, LineAttr, Mask,
    PathSeg, Point, PointFix, Repeat, Ropd, ScaleMode, Transform,
};
pub use image::{rgb555_to_argb, Bitmap, BitmapFormat, Image, ImageKind, Palette, PixelData};
pub use monitors::{Head, MonitorsConfig};
pub use surface::{SurfaceCommand, SurfaceFormat};

use crate::abi::cmd::{self, QxlUpdateCmd};
use crate::mem::{GuestMemory, MemError, QxlPhys};
use thiserror::Error;
use zerocopy::{FromBytes, IntoBytes};

/// Bounds applied while decoding (all from the device configuration).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Number of surfaces (ROM `n_surfaces`); surface ids must be below it.
    pub n_surfaces: u32,
    /// Largest number of data chunks walked in one chain.
    pub max_chunks: u32,
    /// Largest total byte size of one chunk chain / bitmap.
    pub max_data_bytes: u64,
    /// Largest number of monitors heads accepted (QXL: 64).
    pub max_heads: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            n_surfaces: 1024,
            max_chunks: 65_536,
            max_data_bytes: 0x7FFF_FFFF,
            max_heads: 64,
        }
    }
}

/// Largest number of clip rectangles accepted in one drawable (Linux sends at most 256, the
/// DRM dirty-clip limit; the bound keeps the renderer's region work small).
pub const MAX_CLIP_RECTS: u32 = 4096;
/// Largest cursor width or height (QEMU's fix for CVE-2021-4206 uses the same bound).
pub const MAX_CURSOR_SIDE: u16 = 512;
/// Largest number of glyphs in one TEXT string.
pub const MAX_GLYPHS: u16 = 8192;
/// Largest bitmap/surface width or height accepted (pixels).
pub const MAX_IMAGE_SIDE: u32 = 32_768;

/// Why a guest command was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A guest address could not be read.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// The command type is not one the ring may carry.
    #[error("unknown command type {0}")]
    UnknownCommandType(u32),
    /// An address plus a length leaves the 48-bit offset space.
    #[error("address {addr:#x} + {len} bytes overflows")]
    AddressOverflow {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// A required address was 0.
    #[error("null address for {0}")]
    NullAddress(&'static str),
    /// A chunk chain is longer than the limit.
    #[error("chunk chain longer than {max} chunks")]
    TooManyChunks {
        /// The limit.
        max: u32,
    },
    /// A chunk chain visits the same chunk twice.
    #[error("chunk chain loops back to {addr:#x}")]
    ChunkLoop {
        /// The chunk address seen twice.
        addr: u64,
    },
    /// A chunk chain holds more bytes than allowed.
    #[error("chunk chain holds {total} bytes, more than {max}")]
    ChunkDataTooLarge {
        /// Bytes counted so far.
        total: u64,
        /// The bound.
        max: u64,
    },
    /// A chunk chain's total does not match the size its owner declares.
    #[error("{what}: chunk chain holds {got} bytes, expected {expected}")]
    ChunkTotalMismatch {
        /// Which object.
        what: &'static str,
        /// Declared size.
        expected: u64,
        /// Sum of the chunks.
        got: u64,
    },
    /// Unknown drawable type.
    #[error("unknown drawable type {0}")]
    UnknownDrawType(u8),
    /// Unknown image type.
    #[error("unknown image type {0}")]
    UnknownImageType(u8),
    /// A compressed image type this device does not decode (QUIC, LZ, GLZ, JPEG, ...).
    #[error("compressed image type {0} (QUIC/LZ/JPEG) is not accepted from the guest")]
    CompressedImage(u8),
    /// Unknown bitmap format.
    #[error("unknown bitmap format {0}")]
    BadBitmapFormat(u8),
    /// Bitmap dimensions or stride are invalid or overflow.
    #[error("bitmap {width}x{height} format {format} stride {stride} is invalid")]
    BadBitmapSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride.
        stride: u32,
        /// Format.
        format: u8,
    },
    /// A palettized bitmap without a palette.
    #[error("bitmap format {format} needs a palette")]
    MissingPalette {
        /// Format.
        format: u8,
    },
    /// A palette with too many entries.
    #[error("palette has {num_ents} entries, at most {max} allowed")]
    PaletteTooLarge {
        /// Entries declared.
        num_ents: u16,
        /// Bound.
        max: u16,
    },
    /// A mask image that is not a 1-bit bitmap.
    #[error("mask image must be a 1-bit bitmap, got image type {ty} format {format}")]
    BadMask {
        /// Image type.
        ty: u8,
        /// Bitmap format (0 if not a bitmap).
        format: u8,
    },
    /// A surface id at or above `n_surfaces` (CVE-2015-5260).
    #[error("surface id {id} out of range (n_surfaces {n_surfaces})")]
    SurfaceIdOutOfRange {
        /// The id.
        id: u32,
        /// The bound.
        n_surfaces: u32,
    },
    /// Unknown surface format.
    #[error("unknown surface format {0}")]
    BadSurfaceFormat(u32),
    /// Invalid surface geometry (CVE-2015-5261).
    #[error("surface {width}x{height} stride {stride} format {format} is invalid: {why}")]
    BadSurface {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride.
        stride: i32,
        /// Format.
        format: u32,
        /// Which rule failed.
        why: &'static str,
    },
    /// Unknown surface command type.
    #[error("unknown surface command type {0}")]
    BadSurfaceCmdType(u8),
    /// Unknown cursor command type.
    #[error("unknown cursor command type {0}")]
    BadCursorCmdType(u8),
    /// Unknown cursor type.
    #[error("unknown cursor type {0}")]
    BadCursorType(u16),
    /// Cursor dimensions out of bounds (CVE-2021-4206).
    #[error("cursor {width}x{height} is out of bounds (max side {max})")]
    BadCursorSize {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// Bound.
        max: u16,
    },
    /// The cursor holds fewer bytes than its type and size need.
    #[error("cursor type {ty} {width}x{height} needs {needed} bytes, has {available}")]
    CursorDataShort {
        /// Cursor type.
        ty: u16,
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// Bytes needed.
        needed: u64,
        /// min(data_size, chunk total).
        available: u64,
    },
    /// A monitors config count above its bound (CVE-2015-3247).
    #[error("monitors config count {count} exceeds {max}")]
    MonitorsCount {
        /// Count read (once).
        count: u16,
        /// Bound applied.
        max: u32,
    },
    /// An inverted or out-of-bounds rectangle.
    #[error("{what} rectangle {rect:?} is invalid")]
    BadRect {
        /// Which rectangle.
        what: &'static str,
        /// The rectangle.
        rect: Rect,
    },
    /// Clip rects count and chunk data disagree, or too many rects.
    #[error("clip has {num_rects} rects but {bytes} bytes of data (max {max} rects)")]
    BadClipRects {
        /// Declared count.
        num_rects: u32,
        /// Chunk total.
        bytes: u64,
        /// Bound.
        max: u32,
    },
    /// Unknown clip type.
    #[error("unknown clip type {0}")]
    BadClipType(u32),
    /// Unknown brush type.
    #[error("unknown brush type {0}")]
    BadBrushType(u32),
    /// A path's segments do not fill exactly its data.
    #[error("path data of {data_size} bytes is malformed at byte {at}")]
    BadPath {
        /// Declared size.
        data_size: u32,
        /// Where parsing failed.
        at: u64,
    },
    /// A glyph string is malformed.
    #[error(
        "glyph string ({length} glyphs, flags {flags:#x}, {data_size} bytes) is malformed: {why}"
    )]
    BadString {
        /// Glyph count.
        length: u16,
        /// Flags.
        flags: u16,
        /// Declared size.
        data_size: u32,
        /// Which rule failed.
        why: &'static str,
    },
}

/// A rectangle, exclusive right/bottom (QXLRect order is top, left, bottom, right).
///
/// `repr(C)` in QXLRect's field order, so clip lists are copied from guest memory straight
/// into `Rect`s (then converted from little-endian).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct Rect {
    /// Top edge.
    pub top: i32,
    /// Left edge.
    pub left: i32,
    /// Bottom edge (exclusive).
    pub bottom: i32,
    /// Right edge (exclusive).
    pub right: i32,
}

impl Rect {
    /// A rectangle from its edges.
    pub const fn new(left: i32, top: i32, right: i32, bottom: i32) -> Self {
        Rect {
            top,
            left,
            bottom,
            right,
        }
    }
    /// Width (0 if inverted).
    pub fn width(&self) -> u32 {
        (self.right as i64 - self.left as i64).max(0) as u32
    }
    /// Height (0 if inverted).
    pub fn height(&self) -> u32 {
        (self.bottom as i64 - self.top as i64).max(0) as u32
    }
    /// True if the rectangle covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.left >= self.right || self.top >= self.bottom
    }
    /// The intersection (possibly empty).
    pub fn intersect(&self, o: &Rect) -> Rect {
        Rect {
            top: self.top.max(o.top),
            left: self.left.max(o.left),
            bottom: self.bottom.min(o.bottom),
            right: self.right.min(o.right),
        }
    }
    pub(crate) fn from_wire(r: &cmd::QxlRect) -> Rect {
        Rect {
            top: r.top.get(),
            left: r.left.get(),
            bottom: r.bottom.get(),
            right: r.right.get(),
        }
    }
    /// Rejects inverted rectangles (an empty one is fine).
    pub(crate) fn checked(self, what: &'static str) -> Result<Rect, DecodeError> {
        if self.left > self.right || self.top > self.bottom {
            return Err(DecodeError::BadRect { what, rect: self });
        }
        Ok(self)
    }
}

/// A validated surface description (CREATE_PRIMARY or QXL_SURFACE_CMD_CREATE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurfaceDesc {
    /// Width in pixels (> 0).
    pub width: u32,
    /// Height in pixels (> 0).
    pub height: u32,
    /// Bytes per row; negative = bottom-up.
    pub stride: i32,
    /// SPICE_SURFACE_FMT_* value (validated).
    pub format: u32,
    /// Where the pixels live.
    pub data: QxlPhys,
}

/// A decoded command-ring entry.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DisplayCommand {
    /// QXL_CMD_NOP.
    Nop,
    /// QXL_CMD_DRAW: a validated drawable.
    Draw(Box<Drawable>),
    /// QXL_CMD_SURFACE: create or destroy an off-screen surface.
    Surface(SurfaceCommand),
    /// QXL_CMD_UPDATE (deprecated, unused by Linux and Xorg): decoded, harmless.
    Update {
        /// Surface.
        surface_id: u32,
        /// Area.
        area: Rect,
        /// Update id.
        update_id: u32,
    },
    /// QXL_CMD_MESSAGE: its text is not read (unbounded guest string); nothing to do.
    Message,
}

impl DisplayCommand {
    /// Copies every bitmap the command references into host memory (see
    /// [`Drawable::load_pixels`]); a no-op for commands without images. Decoding leaves pixel
    /// bytes in guest memory (validated ranges) so the renderer can copy them once, straight
    /// into a surface; call this before the command is released if the value must outlive it
    /// (e.g. before queueing it to the Spice bridge).
    pub fn load_pixels(&mut self, mem: &dyn GuestMemory) -> Result<(), MemError> {
        match self {
            DisplayCommand::Draw(d) => d.load_pixels(mem),
            _ => Ok(()),
        }
    }
}

/// Copies one wire struct out of guest memory (the single read of those bytes).
pub(crate) fn read_struct<T: FromBytes + IntoBytes>(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
) -> Result<T, MemError> {
    let mut v = T::new_zeroed();
    mem.read(addr, v.as_mut_bytes())?;
    Ok(v)
}

/// Checks a surface id against `n_surfaces`.
pub(crate) fn check_surface_id(id: u32, limits: &Limits) -> Result<u32, DecodeError> {
    if id >= limits.n_surfaces {
        return Err(DecodeError::SurfaceIdOutOfRange {
            id,
            n_surfaces: limits.n_surfaces,
        });
    }
    Ok(id)
}

/// Decodes one command-ring entry (`QXLCommand.type`, `QXLCommand.data`).
pub fn decode_display(
    mem: &dyn GuestMemory,
    ty: u32,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<DisplayCommand, DecodeError> {
    match ty {
        cmd::cmd_type::NOP => Ok(DisplayCommand::Nop),
        cmd::cmd_type::DRAW => Ok(DisplayCommand::Draw(Box::new(draw::decode_drawable(
            mem, addr, limits,
        )?))),
        cmd::cmd_type::SURFACE => Ok(DisplayCommand::Surface(surface::decode_surface_cmd(
            mem, addr, limits,
        )?)),
        cmd::cmd_type::UPDATE => {
            let u: QxlUpdateCmd = read_struct(mem, addr)?;
            let surface_id = check_surface_id(u.surface_id.get(), limits)?;
            Ok(DisplayCommand::Update {
                surface_id,
                area: Rect::from_wire(&u.area).checked("update area")?,
                update_id: u.update_id.get(),
            })
        }
        cmd::cmd_type::MESSAGE => {
            // Only make sure the release info is there; the text is never read.
            let mut b = [0u8; 8];
            mem.read(addr, &mut b)?;
            Ok(DisplayCommand::Message)
        }
        other => Err(DecodeError::UnknownCommandType(other)),
    }
}

/// Decodes one command-ring entry of a device in qxl-1 compat mode (after SET_MODE): a DRAW
/// is a `QXLCompatDrawable` (QEMU's QXL_COMMAND_FLAG_COMPAT), drawn on the primary; with
/// `colors_16bpp` (a 16-bit mode, QXL_COMMAND_FLAG_COMPAT_16BPP) its solid colours are x555.
/// Every other command type decodes as in [`decode_display`].
pub fn decode_compat_display(
    mem: &dyn GuestMemory,
    ty: u32,
    addr: QxlPhys,
    colors_16bpp: bool,
    limits: &Limits,
) -> Result<DisplayCommand, DecodeError> {
    match ty {
        cmd::cmd_type::DRAW => Ok(DisplayCommand::Draw(Box::new(
            draw::decode_compat_drawable(mem, addr, colors_16bpp, limits)?,
        ))),
        _ => decode_display(mem, ty, addr, limits),
    }
}

/// Decodes one cursor-ring entry.
pub fn decode_cursor(
    mem: &dyn GuestMemory,
    ty: u32,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<CursorCommand, DecodeError> {
    if ty != cmd::cmd_type::CURSOR {
        return Err(DecodeError::UnknownCommandType(ty));
    }
    cursor::decode_cursor_cmd(mem, addr, limits)
}

/// Decodes the QXLMonitorsConfig at `addr` (count read once, bounded).
pub fn decode_monitors_config(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<MonitorsConfig, DecodeError> {
    monitors::decode(mem, addr, limits)
}

/// Validates a surface description (format, stride, size, memory range).
pub fn validate_surface(
    mem: &dyn GuestMemory,
    width: u32,
    height: u32,
    stride: i32,
    format: u32,
    data: QxlPhys,
    limits: &Limits,
) -> Result<SurfaceDesc, DecodeError> {
    surface::validate(mem, width, height, stride, format, data, limits)
}
