//! Guest commands → validated Rust values (reference qxl-device.md §7, §9).
//!
//! CONTRACT with the device core (which pops rings and calls these):
//! - [`decode_display`] for every command-ring entry, [`decode_cursor`] for every cursor-ring
//!   entry, [`decode_monitors_config`] for MONITORS_CONFIG_ASYNC, [`validate_surface`] for
//!   CREATE_PRIMARY. Each copies every guest struct once, then validates; errors name the
//!   offending value. The release_info (first 8 bytes of every command) is handled by the
//!   device core, not here.
//! - Nothing here panics on any guest input.

use crate::mem::{GuestMemory, MemError, QxlPhys};
use thiserror::Error;

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
}

/// A decoded cursor-ring entry.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CursorCommand {
    /// QXL_CURSOR_HIDE.
    Hide,
}

/// A decoded QXLMonitorsConfig (guest → device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorsConfig {}

/// Decodes one command-ring entry (`QXLCommand.type`, `QXLCommand.data`).
pub fn decode_display(
    _mem: &dyn GuestMemory,
    ty: u32,
    _addr: QxlPhys,
    _limits: &Limits,
) -> Result<DisplayCommand, DecodeError> {
    Err(DecodeError::UnknownCommandType(ty))
}

/// Decodes one cursor-ring entry.
pub fn decode_cursor(
    _mem: &dyn GuestMemory,
    ty: u32,
    _addr: QxlPhys,
    _limits: &Limits,
) -> Result<CursorCommand, DecodeError> {
    Err(DecodeError::UnknownCommandType(ty))
}

/// Decodes the QXLMonitorsConfig at `addr` (count read once, bounded).
pub fn decode_monitors_config(
    _mem: &dyn GuestMemory,
    _addr: QxlPhys,
    _limits: &Limits,
) -> Result<MonitorsConfig, DecodeError> {
    Ok(MonitorsConfig::default())
}

/// Validates a surface description (format, stride, size, memory range).
pub fn validate_surface(
    _mem: &dyn GuestMemory,
    width: u32,
    height: u32,
    stride: i32,
    format: u32,
    data: QxlPhys,
    _limits: &Limits,
) -> Result<SurfaceDesc, DecodeError> {
    Ok(SurfaceDesc {
        width,
        height,
        stride,
        format,
        data,
    })
}
