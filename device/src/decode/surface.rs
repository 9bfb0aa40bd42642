//! Surface create/destroy commands and surface validation (reference §7 "Surfaces", §9
//! CVE-2015-5260/5261).

use super::chunks::probe_range;
use super::{check_surface_id, read_struct, DecodeError, Limits, SurfaceDesc, MAX_IMAGE_SIDE};
use crate::abi::cmd::{surface_cmd, surface_fmt, QxlSurfaceCmd};
use crate::mem::{GuestMemory, QxlPhys};

/// A decoded `QXL_CMD_SURFACE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurfaceCommand {
    /// Create off-screen surface `id`.
    Create {
        /// Surface id (1..n_surfaces; 0 is accepted only if the guest sends it, as spice does).
        id: u32,
        /// Validated geometry and memory.
        desc: SurfaceDesc,
        /// QXL_SURF_FLAG_KEEP_DATA: initial pixels come from guest memory.
        keep_data: bool,
    },
    /// Destroy surface `id`.
    Destroy {
        /// Surface id.
        id: u32,
    },
}

/// A surface pixel format (`SPICE_SURFACE_FMT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SurfaceFormat {
    /// 1 bpp alpha.
    A1,
    /// 8 bpp alpha.
    A8,
    /// 16 bpp x555.
    Rgb555,
    /// 16 bpp 565.
    Rgb565,
    /// 32 bpp xRGB.
    Xrgb32,
    /// 32 bpp ARGB (premultiplied).
    Argb32,
}

impl SurfaceFormat {
    /// The format for a `SPICE_SURFACE_FMT_*` value.
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            surface_fmt::A1 => Self::A1,
            surface_fmt::A8 => Self::A8,
            surface_fmt::RGB555 => Self::Rgb555,
            surface_fmt::RGB565 => Self::Rgb565,
            surface_fmt::XRGB32 => Self::Xrgb32,
            surface_fmt::ARGB32 => Self::Argb32,
            _ => return None,
        })
    }
    /// Bits per pixel.
    pub fn bpp(self) -> u32 {
        match self {
            Self::A1 => 1,
            Self::A8 => 8,
            Self::Rgb555 | Self::Rgb565 => 16,
            Self::Xrgb32 | Self::Argb32 => 32,
        }
    }
}

pub(super) fn validate(
    mem: &dyn GuestMemory,
    width: u32,
    height: u32,
    stride: i32,
    format: u32,
    data: QxlPhys,
    _limits: &Limits,
) -> Result<SurfaceDesc, DecodeError> {
    let bad = |why| DecodeError::BadSurface {
        width,
        height,
        stride,
        format,
        why,
    };
    let fmt = SurfaceFormat::from_raw(format).ok_or(DecodeError::BadSurfaceFormat(format))?;
    if width == 0 || height == 0 {
        return Err(bad("zero width or height"));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(bad("width or height above 32768"));
    }
    if stride == i32::MIN {
        return Err(bad("stride is INT32_MIN"));
    }
    let abs = stride.unsigned_abs() as u64;
    let min_stride = (width as u64 * fmt.bpp() as u64).div_ceil(8);
    if abs < min_stride {
        return Err(bad("|stride| smaller than a row"));
    }
    if abs % 4 != 0 {
        return Err(bad("stride not a multiple of 4"));
    }
    let bytes = abs * height as u64;
    if bytes > 0x7FFF_FFFF {
        return Err(bad("height * |stride| above 0x7FFFFFFF"));
    }
    if data.is_null() {
        return Err(DecodeError::NullAddress("surface data"));
    }
    probe_range(mem, data, bytes)?;
    Ok(SurfaceDesc {
        width,
        height,
        stride,
        format,
        data,
    })
}

pub(super) fn decode_surface_cmd(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<SurfaceCommand, DecodeError> {
    let c: QxlSurfaceCmd = read_struct(mem, addr)?;
    let id = check_surface_id(c.surface_id.get(), limits)?;
    match c.ty {
        surface_cmd::CREATE => {
            let s = &c.surface_create;
            let desc = validate(
                mem,
                s.width.get(),
                s.height.get(),
                s.stride.get(),
                s.format.get(),
                QxlPhys(s.data.get()),
                limits,
            )?;
            Ok(SurfaceCommand::Create {
                id,
                desc,
                keep_data: c.flags.get() & surface_cmd::FLAG_KEEP_DATA != 0,
            })
        }
        surface_cmd::DESTROY => Ok(SurfaceCommand::Destroy { id }),
        t => Err(DecodeError::BadSurfaceCmdType(t)),
    }
}
