//! The input format and driver of the `decode` fuzz target (`device/fuzz`), shared with the
//! unit test that writes its seed corpus, so both always agree.
//!
//! Input: `selector u8 | ty u32 | offset u32 | slot1_len u16 | slot1 bytes | slot2 bytes`
//! (little-endian). Slot 1 and slot 2 (generation 0) hold the fuzzer's bytes; slot 3 holds the
//! pixels of the surfaces the renderer draws into (a 64x64 primary, a 32x32 xRGB and a
//! 16x16 A8 off-screen surface). `selector % 4` picks `decode_display` (0; with bit 7 set
//! `decode_compat_display`, bit 6 its 16-bit colours), `decode_cursor`
//! (1), `decode_monitors_config` (2) or `validate_surface` (3) at slot 1 + `offset`; decoded
//! display commands are rendered and every surface is written back.

use super::testmem::VecMemory;
use super::{
    decode_compat_display, decode_cursor, decode_display, decode_monitors_config, validate_surface,
    Limits, Rect,
};
use crate::mem::QxlPhys;
use crate::render::Renderer;

/// One fuzz case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuzzInput {
    /// Which decoder (mod 4).
    pub selector: u8,
    /// Command type (or, for `validate_surface`, the format).
    pub ty: u32,
    /// Offset of the command in slot 1.
    pub offset: u32,
    /// Slot 1 contents.
    pub slot1: Vec<u8>,
    /// Slot 2 contents.
    pub slot2: Vec<u8>,
}

/// Largest slot the target builds.
pub const MAX_SLOT: usize = 1 << 16;

impl FuzzInput {
    /// Serialises the case.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.selector];
        v.extend_from_slice(&self.ty.to_le_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        let n = self.slot1.len().min(u16::MAX as usize);
        v.extend_from_slice(&(n as u16).to_le_bytes());
        v.extend_from_slice(&self.slot1[..n]);
        v.extend_from_slice(&self.slot2);
        v
    }

    /// Parses a case; `None` if the header is incomplete.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let h = data.get(..11)?;
        let n = u16::from_le_bytes([h[9], h[10]]) as usize;
        let rest = &data[11..];
        let n = n.min(rest.len());
        Some(FuzzInput {
            selector: h[0],
            ty: u32::from_le_bytes([h[1], h[2], h[3], h[4]]),
            offset: u32::from_le_bytes([h[5], h[6], h[7], h[8]]),
            slot1: rest[..n].to_vec(),
            slot2: rest[n..].iter().take(MAX_SLOT).copied().collect(),
        })
    }
}

/// Runs one fuzz input through the decoders and the renderer. Never panics on any input
/// (that is what the fuzz target checks).
pub fn run(data: &[u8]) {
    let Some(inp) = FuzzInput::parse(data) else {
        return;
    };
    let mut mem = VecMemory::new();
    mem.add_slot_with(1, 0, inp.slot1.clone());
    mem.add_slot_with(2, 0, inp.slot2.clone());
    mem.add_slot(3, 0, 64 * 64 * 4 + 32 * 32 * 4 + 16 * 16);
    let limits = Limits {
        n_surfaces: 8,
        max_chunks: 1024,
        max_data_bytes: 1 << 20,
        max_heads: 64,
    };
    let mut r = Renderer::new(8, 1 << 20);
    let p3 = |off: u64| QxlPhys::new(3, 0, off);
    for (id, w, h, stride, fmt, off) in [
        (0u32, 64u32, 64u32, 256i32, 32u32, 0u64),
        (1, 32, 32, -128, 32, 64 * 64 * 4),
        (2, 16, 16, 16, 8, 64 * 64 * 4 + 32 * 32 * 4),
    ] {
        if let Ok(desc) = validate_surface(&mem, w, h, stride, fmt, p3(off), &limits) {
            let _ = r.create_surface(id, &desc, false, &mem);
        }
    }
    let addr = QxlPhys::new(1, 0, inp.offset as u64);
    match inp.selector % 4 {
        0 => {
            // Bit 7: decode as a qxl-1 compat command (bit 6: 16-bit colours).
            let cmd = if inp.selector & 0x80 != 0 {
                let colors_16bpp = inp.selector & 0x40 != 0;
                decode_compat_display(&mem, inp.ty, addr, colors_16bpp, &limits)
            } else {
                decode_display(&mem, inp.ty, addr, &limits)
            };
            if let Ok(cmd) = cmd {
                let _ = r.draw(&cmd, &mem);
            }
        }
        1 => {
            let _ = decode_cursor(&mem, inp.ty, addr, &limits);
        }
        2 => {
            let _ = decode_monitors_config(&mem, addr, &limits);
        }
        _ => {
            // Surface geometry from the slot bytes at `offset`.
            let g = |i: usize| {
                let o = inp.offset as usize + i * 4;
                inp.slot1
                    .get(o..o + 4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            if let Ok(desc) = validate_surface(
                &mem,
                g(0) % 256,
                g(1) % 256,
                g(2) as i32,
                inp.ty,
                QxlPhys(g(3) as u64 | 1 << 56),
                &limits,
            ) {
                let _ = r.create_surface(3, &desc, g(4) & 1 != 0, &mem);
            }
        }
    }
    let _ = r.update_area(0, Rect::new(0, 0, 64, 64), &mem);
    r.flush_all(&mem);
    let _ = r.snapshot(0);
}
