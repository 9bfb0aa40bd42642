//! The software renderer: surfaces kept by the device, drawn by decoded commands, written back
//! into guest memory on UPDATE_AREA / FLUSH_SURFACES, and snapshotted as images.
//!
//! CONTRACT with the device core: `Renderer::new`, `create_surface`, `destroy_surface`,
//! `destroy_all`, `draw`, `update_area`, `flush_all`, `snapshot`. Nothing here panics on any
//! guest input; host memory used by surfaces is bounded by a budget.

use crate::decode::{DisplayCommand, SurfaceDesc};
use crate::mem::GuestMemory;
use thiserror::Error;

/// Why a render operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderError {
    /// The surface id does not name a live surface.
    #[error("surface {0} does not exist")]
    NoSuchSurface(u32),
}

/// A rectangle, exclusive right/bottom (QXLRect order is top, left, bottom, right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// A copy of a surface's pixels, 32-bit xRGB/ARGB, top-down, tightly packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels, 0xAARRGGBB.
    pub pixels: Vec<u32>,
}

/// All surfaces of one device.
#[derive(Debug, Default)]
pub struct Renderer {}

impl Renderer {
    /// A renderer for `n_surfaces` surfaces with at most `budget_bytes` of host pixel memory.
    pub fn new(_n_surfaces: u32, _budget_bytes: u64) -> Self {
        Renderer {}
    }
    /// Creates surface `id`; with `keep_data` its initial pixels are read from guest memory.
    pub fn create_surface(
        &mut self,
        _id: u32,
        _desc: &SurfaceDesc,
        _keep_data: bool,
        _mem: &dyn GuestMemory,
    ) -> Result<(), RenderError> {
        Ok(())
    }
    /// Destroys surface `id` (writing its pixels back to guest memory first).
    pub fn destroy_surface(&mut self, id: u32, _mem: &dyn GuestMemory) -> Result<(), RenderError> {
        Err(RenderError::NoSuchSurface(id))
    }
    /// Destroys every surface, primary included, without writing back.
    pub fn destroy_all(&mut self) {}
    /// Applies a decoded draw command.
    pub fn draw(
        &mut self,
        _cmd: &DisplayCommand,
        _mem: &dyn GuestMemory,
    ) -> Result<(), RenderError> {
        Ok(())
    }
    /// Writes the rendered pixels of `area` of surface `id` into guest memory.
    pub fn update_area(
        &mut self,
        id: u32,
        _area: Rect,
        _mem: &dyn GuestMemory,
    ) -> Result<(), RenderError> {
        Err(RenderError::NoSuchSurface(id))
    }
    /// Writes every surface back into guest memory (FLUSH_SURFACES_ASYNC).
    pub fn flush_all(&mut self, _mem: &dyn GuestMemory) {}
    /// A copy of surface `id`'s pixels.
    pub fn snapshot(&self, _id: u32) -> Option<Snapshot> {
        None
    }
}
