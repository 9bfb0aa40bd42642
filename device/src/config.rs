//! Device configuration and the BAR0 layout derived from it (reference qxl-device.md §2).

use crate::abi::dev::{QXL_PAGE_SIZE, RAM_HEADER_RESERVED};
use thiserror::Error;

const MIB: u64 = 1024 * 1024;

/// Configuration of one QXL device. [`QxlConfig::default`] is QEMU's `qxl-vga` default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QxlConfig {
    /// PCI revision: 4 or 5 (Linux refuses < 4; 5 is QEMU's default since 5.0).
    pub revision: u8,
    /// `true`: class 0x0300 (primary VGA-compatible, `qxl-vga`, Bochs VBE fallback, starts in
    /// VGA mode); `false`: class 0x0380 (secondary `qxl`, starts in undefined mode).
    pub vga: bool,
    /// BAR0 (RAM) size in bytes: a power of two, at least `2 * vgamem_size`.
    pub ram_size: u64,
    /// Surface-0 area at the start of BAR0 (QEMU `vgamem`): a power of two, 1 MiB..=256 MiB.
    pub vgamem_size: u64,
    /// BAR1 (32-bit VRAM) size: a power of two, at least 4096, at most 1 GiB.
    pub vram_size: u64,
    /// Optional 64-bit BAR4: a power of two larger than `vram_size`; BAR1 then aliases its
    /// first `vram_size` bytes.
    pub vram64_size: Option<u64>,
    /// Number of surfaces (ROM `n_surfaces`): 1..=65536.
    pub n_surfaces: u32,
    /// Device / console index (ROM `id`).
    pub id: u32,
    /// Largest number of client monitors reported to the guest (0 = 64, at most 64).
    pub max_outputs: u32,
    /// Guest debug level (ROM `log_level`).
    pub log_level: u32,
    /// Behaviour after a guest bug. `false` (default): reject the offending operation, raise
    /// `QXL_INTERRUPT_ERROR`, report [`crate::DeviceEvent::GuestBug`] and keep serving (a broken
    /// ring is parked until reset). `true`: mimic QEMU: ignore every I/O except RESET and stop
    /// consuming rings until RESET.
    pub halt_on_guest_bug: bool,
    /// Host memory budget for the software renderer's surfaces, in bytes.
    pub render_budget_bytes: u64,
    /// Pre-filled client monitors config (QEMU `xres`/`yres`): one head of this size.
    pub initial_monitor: Option<(u32, u32)>,
}

impl Default for QxlConfig {
    fn default() -> Self {
        QxlConfig {
            revision: 5,
            vga: true,
            ram_size: 64 * MIB,
            vgamem_size: 16 * MIB,
            vram_size: 64 * MIB,
            vram64_size: None,
            n_surfaces: 1024,
            id: 0,
            max_outputs: 0,
            log_level: 0,
            halt_on_guest_bug: false,
            render_budget_bytes: 512 * MIB,
            initial_monitor: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Revision other than 4 or 5.
    #[error("revision {0} is not supported (4 or 5)")]
    Revision(u8),
    /// A size is not a power of two or out of its range.
    #[error("{what} size {size:#x} is invalid: {why}")]
    Size {
        /// Which size.
        what: &'static str,
        /// The value given.
        size: u64,
        /// The rule it breaks.
        why: &'static str,
    },
    /// `n_surfaces` out of range.
    #[error("n_surfaces {0} out of range 1..=65536")]
    Surfaces(u32),
    /// `max_outputs` above 64.
    #[error("max_outputs {0} above 64")]
    MaxOutputs(u32),
}

/// Where things live in BAR0 and the ROM, derived from a validated [`QxlConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Surface-0 area size (= vgamem, page aligned).
    pub surface0_area_size: u32,
    /// Offset of the guest-managed pages (= `surface0_area_size`).
    pub pages_offset: u32,
    /// Number of 4 KiB pages between the surface-0 area and the RAM header.
    pub num_pages: u32,
    /// Offset of the RAM header in BAR0 (BAR0 size − 8192).
    pub ram_header_offset: u32,
    /// ROM BAR size (8 KiB).
    pub rom_size: u32,
}

fn pow2(what: &'static str, size: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if !size.is_power_of_two() {
        return Err(ConfigError::Size {
            what,
            size,
            why: "not a power of two",
        });
    }
    if size < min || size > max {
        return Err(ConfigError::Size {
            what,
            size,
            why: "out of range",
        });
    }
    Ok(())
}

impl QxlConfig {
    /// Checks every rule and returns the derived BAR0 layout.
    pub fn validate(&self) -> Result<Layout, ConfigError> {
        if !(4..=5).contains(&self.revision) {
            return Err(ConfigError::Revision(self.revision));
        }
        pow2("vgamem", self.vgamem_size, MIB, 256 * MIB)?;
        // BAR0 is a 32-bit BAR: at most 2 GiB.
        pow2("ram", self.ram_size, 2 * MIB, 2048 * MIB)?;
        if self.ram_size < 2 * self.vgamem_size {
            return Err(ConfigError::Size {
                what: "ram",
                size: self.ram_size,
                why: "smaller than 2 * vgamem",
            });
        }
        pow2("vram", self.vram_size, 4096, 1024 * MIB)?;
        if let Some(v64) = self.vram64_size {
            pow2("vram64", v64, 4096, 1 << 40)?;
            if v64 <= self.vram_size {
                return Err(ConfigError::Size {
                    what: "vram64",
                    size: v64,
                    why: "not larger than vram",
                });
            }
        }
        if !(1..=65536).contains(&self.n_surfaces) {
            return Err(ConfigError::Surfaces(self.n_surfaces));
        }
        if self.max_outputs > 64 {
            return Err(ConfigError::MaxOutputs(self.max_outputs));
        }
        // All values below fit u32: ram_size ≤ 2 GiB was checked above.
        let ram = self.ram_size as u32;
        let surface0 = self.vgamem_size as u32;
        let ram_header_offset = ram - RAM_HEADER_RESERVED;
        let num_pages = (ram_header_offset - surface0) / QXL_PAGE_SIZE;
        Ok(Layout {
            surface0_area_size: surface0,
            pages_offset: surface0,
            num_pages,
            ram_header_offset,
            rom_size: 8192,
        })
    }

    /// Size of the VRAM backing (BAR4 if configured, else BAR1).
    pub fn vram_backing_size(&self) -> u64 {
        self.vram64_size.unwrap_or(self.vram_size)
    }

    /// Heads reported to the guest at most (`max_outputs`, 0 = 64).
    pub fn max_heads(&self) -> usize {
        if self.max_outputs == 0 {
            64
        } else {
            self.max_outputs as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_matches_qemu() {
        let l = QxlConfig::default().validate().unwrap();
        assert_eq!(l.ram_header_offset, 0x3FF_E000);
        assert_eq!(l.num_pages, 12286);
        assert_eq!(l.surface0_area_size, 16 << 20);
        assert_eq!(l.pages_offset, 16 << 20);
    }

    #[test]
    fn sizes_must_be_powers_of_two_and_in_range() {
        let bad = [
            QxlConfig {
                ram_size: 48 << 20,
                ..Default::default()
            },
            QxlConfig {
                ram_size: 16 << 20,
                ..Default::default()
            },
            QxlConfig {
                vram_size: 1000,
                ..Default::default()
            },
            QxlConfig {
                vram64_size: Some(64 << 20),
                ..Default::default()
            },
            QxlConfig {
                vgamem_size: 3 << 20,
                ..Default::default()
            },
            QxlConfig {
                revision: 3,
                ..Default::default()
            },
            QxlConfig {
                n_surfaces: 0,
                ..Default::default()
            },
            QxlConfig {
                max_outputs: 65,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} accepted");
        }
        assert!(QxlConfig {
            vram64_size: Some(256 << 20),
            ..Default::default()
        }
        .validate()
        .is_ok());
    }
}
