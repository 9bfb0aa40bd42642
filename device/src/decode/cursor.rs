//! Cursor commands (reference §7 "Cursor", §9 CVE-2021-4206/4207).
//!
//! The `QXLCursor` header is copied once; width, height and type are validated on that copy
//! with u64 size maths, and exactly the bytes the type needs are read.

use super::chunks::{self, CHUNK_HEADER};
use super::draw::Point;
use super::{read_struct, DecodeError, Limits, MAX_CURSOR_SIDE};
use crate::abi::cmd::{cursor_cmd, cursor_type, QxlCursor, QxlCursorCmd};
use crate::mem::{GuestMemory, QxlPhys};

/// A cursor shape type (`SPICE_CURSOR_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CursorKind {
    /// w·h 32-bit ARGB pixels.
    Alpha,
    /// AND mask then XOR mask, each ceil(w/8)·h bytes.
    Mono,
    /// ceil(w/2)·h bytes of 4-bit indices, a 16-entry u32 palette, then the AND mask.
    Color4,
    /// w·h bytes of 8-bit indices, a 256-entry u32 palette, then the AND mask.
    Color8,
    /// w·h 16-bit pixels, then the AND mask.
    Color16,
    /// w·h 24-bit pixels, then the AND mask.
    Color24,
    /// w·h 32-bit pixels, then the AND mask.
    Color32,
}

impl CursorKind {
    /// The kind for a `SPICE_CURSOR_TYPE_*` value.
    pub fn from_raw(v: u16) -> Option<Self> {
        Some(match v {
            cursor_type::ALPHA => Self::Alpha,
            cursor_type::MONO => Self::Mono,
            cursor_type::COLOR4 => Self::Color4,
            cursor_type::COLOR8 => Self::Color8,
            cursor_type::COLOR16 => Self::Color16,
            cursor_type::COLOR24 => Self::Color24,
            cursor_type::COLOR32 => Self::Color32,
            _ => return None,
        })
    }
    /// The `SPICE_CURSOR_TYPE_*` value.
    pub fn raw(self) -> u16 {
        match self {
            Self::Alpha => cursor_type::ALPHA,
            Self::Mono => cursor_type::MONO,
            Self::Color4 => cursor_type::COLOR4,
            Self::Color8 => cursor_type::COLOR8,
            Self::Color16 => cursor_type::COLOR16,
            Self::Color24 => cursor_type::COLOR24,
            Self::Color32 => cursor_type::COLOR32,
        }
    }
    /// Bytes of shape data a `w`×`h` cursor of this kind needs (u64, cannot overflow for
    /// u16 sides).
    pub fn data_size(self, w: u16, h: u16) -> u64 {
        let (w, h) = (w as u64, h as u64);
        let mask = w.div_ceil(8) * h;
        match self {
            Self::Alpha => w * h * 4,
            Self::Mono => mask * 2,
            Self::Color4 => w.div_ceil(2) * h + 16 * 4 + mask,
            Self::Color8 => w * h + 256 * 4 + mask,
            Self::Color16 => w * h * 2 + mask,
            Self::Color24 => w * h * 3 + mask,
            Self::Color32 => w * h * 4 + mask,
        }
    }
}

/// A validated cursor shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Guest cache id.
    pub unique: u64,
    /// Shape type.
    pub kind: CursorKind,
    /// Width (1..=512).
    pub width: u16,
    /// Height (1..=512).
    pub height: u16,
    /// Hot spot x.
    pub hot_x: u16,
    /// Hot spot y.
    pub hot_y: u16,
    /// Exactly `kind.data_size(width, height)` bytes.
    pub data: Vec<u8>,
}

/// A decoded cursor-ring entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorCommand {
    /// QXL_CURSOR_SET.
    Set {
        /// Position (Linux: the hot spot's screen position).
        position: Point,
        /// Visible.
        visible: bool,
        /// Shape.
        shape: Cursor,
    },
    /// QXL_CURSOR_MOVE.
    Move {
        /// New position.
        position: Point,
    },
    /// QXL_CURSOR_HIDE.
    Hide,
    /// QXL_CURSOR_TRAIL.
    Trail {
        /// Trail length.
        length: u16,
        /// Trail frequency.
        frequency: u16,
    },
}

fn point16(b: &[u8]) -> Point {
    let x = i16::from_le_bytes([b[0], b[1]]);
    let y = i16::from_le_bytes([b[2], b[3]]);
    Point {
        x: x as i32,
        y: y as i32,
    }
}

pub(super) fn decode_cursor_cmd(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<CursorCommand, DecodeError> {
    let c: QxlCursorCmd = read_struct(mem, addr)?;
    let u = &c.u;
    match c.ty {
        cursor_cmd::SET => {
            let shape = QxlPhys(u64::from_le_bytes([
                u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
            ]));
            Ok(CursorCommand::Set {
                position: point16(&u[0..4]),
                visible: u[4] != 0,
                shape: decode_shape(mem, shape, limits)?,
            })
        }
        cursor_cmd::MOVE => Ok(CursorCommand::Move {
            position: point16(&u[0..4]),
        }),
        cursor_cmd::HIDE => Ok(CursorCommand::Hide),
        cursor_cmd::TRAIL => Ok(CursorCommand::Trail {
            length: u16::from_le_bytes([u[0], u[1]]),
            frequency: u16::from_le_bytes([u[2], u[3]]),
        }),
        t => Err(DecodeError::BadCursorCmdType(t)),
    }
}

fn decode_shape(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<Cursor, DecodeError> {
    if addr.is_null() {
        return Err(DecodeError::NullAddress("cursor shape"));
    }
    // One copy of the whole header (CVE-2021-4207): nothing below reads it again.
    let c: QxlCursor = read_struct(mem, addr)?;
    let h = c.header;
    let ty = h.ty.get();
    let kind = CursorKind::from_raw(ty).ok_or(DecodeError::BadCursorType(ty))?;
    let (width, height) = (h.width.get(), h.height.get());
    if width == 0 || height == 0 || width > MAX_CURSOR_SIDE || height > MAX_CURSOR_SIDE {
        return Err(DecodeError::BadCursorSize {
            width,
            height,
            max: MAX_CURSOR_SIDE,
        });
    }
    let needed = kind.data_size(width, height);
    let data_size = c.data_size.get() as u64;
    let first_data = addr
        .checked_add(22 + CHUNK_HEADER)
        .ok_or(DecodeError::AddressOverflow {
            addr: addr.0,
            len: 42,
        })?;
    // Walk no further than the declared size: spice uses min(data_size, chunk total).
    let chain = match chunks::walk(mem, &c.chunk, first_data, data_size, limits) {
        Ok(ch) => ch,
        Err(DecodeError::ChunkDataTooLarge { .. }) => {
            // The chain holds more than data_size; only data_size bytes count.
            return shape_with(mem, &c, kind, needed, data_size, first_data, limits);
        }
        Err(e) => return Err(e),
    };
    let available = data_size.min(chain.total());
    if available < needed {
        return Err(DecodeError::CursorDataShort {
            ty,
            width,
            height,
            needed,
            available,
        });
    }
    let mut data = vec![0u8; needed as usize];
    chain.read_at(mem, 0, &mut data)?;
    Ok(Cursor {
        unique: h.unique.get(),
        kind,
        width,
        height,
        hot_x: h.hot_spot_x.get(),
        hot_y: h.hot_spot_y.get(),
        data,
    })
}

/// The chain holds more than `data_size`: walk again bounded by what is needed only.
fn shape_with(
    mem: &dyn GuestMemory,
    c: &QxlCursor,
    kind: CursorKind,
    needed: u64,
    data_size: u64,
    first_data: QxlPhys,
    limits: &Limits,
) -> Result<Cursor, DecodeError> {
    let h = c.header;
    if data_size < needed {
        return Err(DecodeError::CursorDataShort {
            ty: h.ty.get(),
            width: h.width.get(),
            height: h.height.get(),
            needed,
            available: data_size,
        });
    }
    // Collect chunks until `needed` bytes are covered (bounded by the same TTL).
    let mut data = Vec::with_capacity(needed as usize);
    let mut header = c.chunk;
    let mut at = first_data;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..limits.max_chunks {
        let take = (header.data_size.get() as u64).min(needed - data.len() as u64) as usize;
        let mut part = vec![0u8; take];
        mem.read(at, &mut part)?;
        data.extend_from_slice(&part);
        if data.len() as u64 == needed {
            return Ok(Cursor {
                unique: h.unique.get(),
                kind,
                width: h.width.get(),
                height: h.height.get(),
                hot_x: h.hot_spot_x.get(),
                hot_y: h.hot_spot_y.get(),
                data,
            });
        }
        let next = QxlPhys(header.next_chunk.get());
        if next.is_null() {
            break;
        }
        if !seen.insert(next.0) {
            return Err(DecodeError::ChunkLoop { addr: next.0 });
        }
        header = read_struct(mem, next)?;
        at = next
            .checked_add(CHUNK_HEADER)
            .ok_or(DecodeError::AddressOverflow {
                addr: next.0,
                len: CHUNK_HEADER,
            })?;
    }
    Err(DecodeError::CursorDataShort {
        ty: h.ty.get(),
        width: h.width.get(),
        height: h.height.get(),
        needed,
        available: data.len() as u64,
    })
}
