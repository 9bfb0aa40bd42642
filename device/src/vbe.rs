//! Bochs VBE ("DISPI") fallback for guests without a qxl driver (firmware, vesafb/efifb),
//! reference qxl-device.md §8.
//!
//! Index port 0x1CE, data port 0x1CF (16-bit). The linear framebuffer is the start of BAR0
//! and the video memory reported is the surface-0 area (vgamem), never the whole BAR
//! (CVE-2014-3615). Every mode is checked so that the visible area, at its offset, lies
//! inside vgamem with 64-bit arithmetic (CVE-2016-3712); a bank beyond vgamem is refused
//! (CVE-2016-3710).

use crate::region::SharedRegion;
use crate::render::Snapshot;

/// DISPI index port.
pub const VBE_DISPI_IOPORT_INDEX: u16 = 0x1CE;
/// DISPI data port.
pub const VBE_DISPI_IOPORT_DATA: u16 = 0x1CF;

/// Register indices.
pub mod index {
    /// Interface id.
    pub const ID: u16 = 0;
    /// Width.
    pub const XRES: u16 = 1;
    /// Height.
    pub const YRES: u16 = 2;
    /// Bits per pixel.
    pub const BPP: u16 = 3;
    /// Enable flags.
    pub const ENABLE: u16 = 4;
    /// 64 KiB bank of the legacy window.
    pub const BANK: u16 = 5;
    /// Virtual width (pixels per line).
    pub const VIRT_WIDTH: u16 = 6;
    /// Virtual height.
    pub const VIRT_HEIGHT: u16 = 7;
    /// X panning offset.
    pub const X_OFFSET: u16 = 8;
    /// Y panning offset.
    pub const Y_OFFSET: u16 = 9;
    /// Video memory in 64 KiB units (read-only).
    pub const VIDEO_MEMORY_64K: u16 = 10;
}

/// ENABLE register bits.
pub mod enable {
    /// Display enabled.
    pub const ENABLED: u16 = 0x01;
    /// Reads of XRES/YRES/BPP return the maxima.
    pub const GETCAPS: u16 = 0x02;
    /// 8-bit DAC.
    pub const DAC8: u16 = 0x20;
    /// Linear framebuffer enabled.
    pub const LFB: u16 = 0x40;
    /// Do not clear memory on enable.
    pub const NOCLEARMEM: u16 = 0x80;
}

/// Highest interface id (0xB0C5).
pub const VBE_DISPI_ID5: u16 = 0xB0C5;
/// Largest width.
pub const VBE_DISPI_MAX_XRES: u16 = 16000;
/// Largest height.
pub const VBE_DISPI_MAX_YRES: u16 = 12000;
/// Largest bpp.
pub const VBE_DISPI_MAX_BPP: u16 = 32;

/// A validated, enabled VBE mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbeMode {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Bits per pixel (8, 15, 16, 24, 32).
    pub bpp: u32,
    /// Bytes per line (virtual width × bytes per pixel).
    pub stride: u32,
    /// Offset of the first visible pixel in BAR0.
    pub offset: u64,
}

/// DISPI register state.
#[derive(Clone, Debug)]
pub struct Vbe {
    index: u16,
    regs: [u16; 11],
    vgamem: u64,
    mode: Option<VbeMode>,
}

fn bytes_pp(bpp: u16) -> u64 {
    match bpp {
        15 | 16 => 2,
        24 => 3,
        32 => 4,
        _ => 1,
    }
}

impl Vbe {
    /// Reset state for a device with `vgamem` bytes of video memory.
    pub fn new(vgamem: u64) -> Self {
        let mut regs = [0u16; 11];
        regs[index::ID as usize] = VBE_DISPI_ID5;
        Vbe {
            index: 0,
            regs,
            vgamem,
            mode: None,
        }
    }

    /// The current mode, if enabled and valid.
    pub fn mode(&self) -> Option<VbeMode> {
        self.mode
    }

    /// Port read (0x1CE index, 0x1CF data). Other ports read 0xFFFF.
    pub fn read(&self, port: u16) -> u16 {
        match port {
            VBE_DISPI_IOPORT_INDEX => self.index,
            VBE_DISPI_IOPORT_DATA => {
                let i = self.index;
                let getcaps = self.regs[index::ENABLE as usize] & enable::GETCAPS != 0;
                match i {
                    index::XRES if getcaps => VBE_DISPI_MAX_XRES,
                    index::YRES if getcaps => VBE_DISPI_MAX_YRES,
                    index::BPP if getcaps => VBE_DISPI_MAX_BPP,
                    index::VIDEO_MEMORY_64K => (self.vgamem / 65536).min(u16::MAX as u64) as u16,
                    _ => self.regs.get(i as usize).copied().unwrap_or(0),
                }
            }
            _ => 0xFFFF,
        }
    }

    /// Port write. Returns `Some(new_mode)` when the enabled mode changed (`Some(None)` =
    /// disabled).
    pub fn write(&mut self, port: u16, value: u16) -> Option<Option<VbeMode>> {
        match port {
            VBE_DISPI_IOPORT_INDEX => {
                self.index = value;
                None
            }
            VBE_DISPI_IOPORT_DATA => self.write_data(value),
            _ => None,
        }
    }

    fn write_data(&mut self, value: u16) -> Option<Option<VbeMode>> {
        let i = self.index;
        match i {
            index::ID => {
                if (0xB0C0..=VBE_DISPI_ID5).contains(&value) {
                    self.regs[0] = value;
                }
                None
            }
            index::XRES | index::YRES | index::VIRT_WIDTH | index::X_OFFSET | index::Y_OFFSET => {
                self.regs[i as usize] = value;
                self.revalidate()
            }
            index::BPP => {
                let v = if value == 0 { 8 } else { value };
                if matches!(v, 4 | 8 | 15 | 16 | 24 | 32) {
                    self.regs[i as usize] = v;
                }
                self.revalidate()
            }
            index::BANK => {
                // The bank selects a 64 KiB window into vgamem; refuse one beyond it.
                if (value as u64 + 1) * 65536 <= self.vgamem {
                    self.regs[i as usize] = value;
                }
                None
            }
            index::ENABLE => {
                self.regs[i as usize] = value;
                self.revalidate()
            }
            _ => None, // VIRT_HEIGHT and VIDEO_MEMORY_64K are derived / read-only
        }
    }

    /// Recomputes the mode from the registers, clamping every value so the visible area lies
    /// inside vgamem. Returns the change, if any.
    fn revalidate(&mut self) -> Option<Option<VbeMode>> {
        let new = self.compute();
        if new != self.mode {
            self.mode = new;
            Some(new)
        } else {
            None
        }
    }

    fn compute(&mut self) -> Option<VbeMode> {
        let r = &mut self.regs;
        let bpp = r[index::BPP as usize];
        if r[index::ENABLE as usize] & enable::ENABLED == 0 || bpp == 4 || bpp == 0 {
            return None;
        }
        let bytes = bytes_pp(bpp);
        let xres = (r[index::XRES as usize] as u64 & !7).clamp(8, VBE_DISPI_MAX_XRES as u64);
        let virt_w = (r[index::VIRT_WIDTH as usize] as u64 & !7)
            .max(xres)
            .min(VBE_DISPI_MAX_XRES as u64);
        r[index::VIRT_WIDTH as usize] = virt_w as u16;
        let stride = virt_w * bytes;
        let max_lines = self.vgamem / stride;
        if max_lines == 0 {
            return None;
        }
        let yres =
            (r[index::YRES as usize] as u64).clamp(1, (VBE_DISPI_MAX_YRES as u64).min(max_lines));
        r[index::VIRT_HEIGHT as usize] = max_lines.min(u16::MAX as u64) as u16;
        let x_off = (r[index::X_OFFSET as usize] as u64).min(virt_w - xres);
        let y_off = (r[index::Y_OFFSET as usize] as u64).min(max_lines - yres);
        let offset = y_off * stride + x_off * bytes;
        // Last visible byte must be inside vgamem (all values ≤ 2^32, no overflow in u64).
        let end = offset + (yres - 1) * stride + xres * bytes;
        if end > self.vgamem {
            return None;
        }
        Some(VbeMode {
            width: xres as u32,
            height: yres as u32,
            bpp: bpp as u32,
            stride: stride as u32,
            offset,
        })
    }

    /// A 0xAARRGGBB copy of the visible framebuffer (32, 24, 16 and 15 bpp; 8 bpp needs the
    /// VGA palette and is not supported).
    pub fn snapshot(&self, ram: &SharedRegion) -> Option<Snapshot> {
        let m = self.mode?;
        let bytes = match m.bpp {
            32 => 4,
            24 => 3,
            15 | 16 => 2,
            _ => return None,
        };
        let row_len = m.width as usize * bytes;
        let mut row = vec![0u8; row_len];
        let mut pixels = Vec::with_capacity(m.width as usize * m.height as usize);
        for y in 0..m.height as u64 {
            ram.read(m.offset + y * m.stride as u64, &mut row).ok()?;
            for px in row.chunks_exact(bytes) {
                let argb = match m.bpp {
                    32 => u32::from_le_bytes([px[0], px[1], px[2], 0]),
                    24 => u32::from_le_bytes([px[0], px[1], px[2], 0]),
                    16 => {
                        let v = u16::from_le_bytes([px[0], px[1]]) as u32;
                        let r = (v >> 11) & 0x1F;
                        let g = (v >> 5) & 0x3F;
                        let b = v & 0x1F;
                        ((r << 3 | r >> 2) << 16) | ((g << 2 | g >> 4) << 8) | (b << 3 | b >> 2)
                    }
                    _ => {
                        let v = u16::from_le_bytes([px[0], px[1]]) as u32;
                        let r = (v >> 10) & 0x1F;
                        let g = (v >> 5) & 0x1F;
                        let b = v & 0x1F;
                        ((r << 3 | r >> 2) << 16) | ((g << 3 | g >> 2) << 8) | (b << 3 | b >> 2)
                    }
                };
                pixels.push(0xFF00_0000 | argb);
            }
        }
        Some(Snapshot {
            width: m.width,
            height: m.height,
            pixels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &mut Vbe, i: u16, val: u16) -> Option<Option<VbeMode>> {
        v.write(VBE_DISPI_IOPORT_INDEX, i);
        v.write(VBE_DISPI_IOPORT_DATA, val)
    }
    fn get(v: &mut Vbe, i: u16) -> u16 {
        v.write(VBE_DISPI_IOPORT_INDEX, i);
        v.read(VBE_DISPI_IOPORT_DATA)
    }

    #[test]
    fn reports_vgamem_not_bar() {
        let mut v = Vbe::new(16 << 20);
        assert_eq!(get(&mut v, index::VIDEO_MEMORY_64K), 256);
        assert_eq!(get(&mut v, index::ID), VBE_DISPI_ID5);
    }

    #[test]
    fn mode_set_and_clamps() {
        let mut v = Vbe::new(16 << 20);
        set(&mut v, index::XRES, 1024);
        set(&mut v, index::YRES, 768);
        set(&mut v, index::BPP, 32);
        let m = set(&mut v, index::ENABLE, enable::ENABLED | enable::LFB)
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.width, m.height, m.stride, m.offset),
            (1024, 768, 4096, 0)
        );
        // A huge mode is clamped to what fits vgamem (CVE-2016-3712).
        set(&mut v, index::XRES, 16000);
        set(&mut v, index::YRES, 12000);
        let m = v.mode().unwrap();
        assert!(
            m.offset + (m.height as u64 - 1) * m.stride as u64 + m.width as u64 * 4 <= 16 << 20
        );
        // Offsets beyond memory are clamped too.
        set(&mut v, index::Y_OFFSET, 0xFFFF);
        set(&mut v, index::X_OFFSET, 0xFFFF);
        let m = v.mode().unwrap();
        assert!(
            m.offset + (m.height as u64 - 1) * m.stride as u64 + m.width as u64 * 4 <= 16 << 20
        );
        // A bank beyond vgamem is refused.
        set(&mut v, index::BANK, 300);
        assert_eq!(get(&mut v, index::BANK), 0);
        assert_eq!(set(&mut v, index::ENABLE, 0), Some(None));
    }
}
