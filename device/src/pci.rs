//! PCI type-0 configuration space of the QXL device (reference qxl-device.md §1, §2).
//!
//! 256 bytes. Writable: command register (I/O, memory, bus master, parity, SERR, INTx
//! disable), cache line size, latency timer, interrupt line and the BAR registers. BARs size
//! themselves on an all-ones probe. Status bit 3 (interrupt status) follows the INTx line.
//! Every change of a BAR's *effective* mapping (decode enabled and address programmed) is
//! returned to the caller as a [`BarMapping`], so the VMM can move the region and the device
//! knows the guest-physical bases it needs for MEMSLOT_ADD.

use crate::abi::dev::{QXL_DEVICE_ID, QXL_SUBSYSTEM_ID, QXL_SUBSYSTEM_VENDOR_ID, QXL_VENDOR_ID};

/// Index of a BAR of the QXL device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BarIndex {
    /// BAR0: RAM (surface-0 area, pages, RAM header).
    Ram = 0,
    /// BAR1: 32-bit VRAM (surfaces).
    Vram = 1,
    /// BAR2: ROM (QXLRom + modes), read-only to the guest.
    Rom = 2,
    /// BAR3: I/O ports.
    Io = 3,
    /// BAR4 (+5): optional 64-bit VRAM.
    Vram64 = 4,
}

impl BarIndex {
    /// All BARs in order.
    pub const ALL: [BarIndex; 5] = [
        BarIndex::Ram,
        BarIndex::Vram,
        BarIndex::Rom,
        BarIndex::Io,
        BarIndex::Vram64,
    ];

    /// From a PCI BAR number.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            0 => Some(BarIndex::Ram),
            1 => Some(BarIndex::Vram),
            2 => Some(BarIndex::Rom),
            3 => Some(BarIndex::Io),
            4 => Some(BarIndex::Vram64),
            _ => None,
        }
    }
}

/// A change of a BAR's effective guest mapping, reported by [`PciConfig::write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMapping {
    /// Which BAR.
    pub bar: BarIndex,
    /// Previous guest address (memory or I/O space), `None` if it was not mapped.
    pub old: Option<u64>,
    /// New guest address, `None` if it is no longer mapped.
    pub new: Option<u64>,
}

/// Static description of one BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// Which BAR.
    pub bar: BarIndex,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// I/O space (else memory space).
    pub io: bool,
    /// 64-bit memory BAR (uses the next register for the high half).
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
}

impl BarInfo {
    fn flag_bits(&self) -> u32 {
        if self.io {
            1
        } else {
            (if self.is_64bit { 0b100 } else { 0 }) | (if self.prefetchable { 0b1000 } else { 0 })
        }
    }
}

/// Command register bits.
pub mod command {
    /// I/O space decode.
    pub const IO: u16 = 1 << 0;
    /// Memory space decode.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master.
    pub const MASTER: u16 = 1 << 2;
    /// Parity error response.
    pub const PARITY: u16 = 1 << 6;
    /// SERR# enable.
    pub const SERR: u16 = 1 << 8;
    /// INTx disable.
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// Bits the guest may write.
    pub const WRITABLE: u16 = IO | MEMORY | MASTER | PARITY | SERR | INTX_DISABLE;
}

/// Status bit 3: interrupt status.
pub const STATUS_INTERRUPT: u16 = 1 << 3;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const BAR0: usize = 0x10;
const INTERRUPT_LINE: usize = 0x3C;

/// The 256-byte configuration space.
#[derive(Clone, Debug)]
pub struct PciConfig {
    bytes: [u8; 256],
    bars: Vec<BarInfo>,
    /// Raw BAR register values (address bits only), per BAR number 0..6.
    bar_addr: [u64; 5],
}

impl PciConfig {
    /// Config space for `revision`, VGA (0x0300) or other (0x0380) class, and these BARs.
    pub fn new(revision: u8, vga: bool, bars: Vec<BarInfo>) -> Self {
        let mut b = [0u8; 256];
        b[0..2].copy_from_slice(&QXL_VENDOR_ID.to_le_bytes());
        b[2..4].copy_from_slice(&QXL_DEVICE_ID.to_le_bytes());
        b[0x08] = revision;
        b[0x09] = 0; // prog-if
        b[0x0A] = if vga { 0x00 } else { 0x80 };
        b[0x0B] = 0x03;
        b[0x0E] = 0; // header type 0, single function
        b[0x2C..0x2E].copy_from_slice(&QXL_SUBSYSTEM_VENDOR_ID.to_le_bytes());
        b[0x2E..0x30].copy_from_slice(&QXL_SUBSYSTEM_ID.to_le_bytes());
        b[0x3D] = 1; // INTA#
        let mut cfg = PciConfig {
            bytes: b,
            bars,
            bar_addr: [0; 5],
        };
        cfg.refresh_bar_bytes();
        cfg
    }

    /// The BARs this device has.
    pub fn bars(&self) -> &[BarInfo] {
        &self.bars
    }

    fn bar_info(&self, bar: BarIndex) -> Option<&BarInfo> {
        self.bars.iter().find(|b| b.bar == bar)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    /// INTx disabled by the guest (command bit 10).
    pub fn intx_disabled(&self) -> bool {
        self.command() & command::INTX_DISABLE != 0
    }

    /// Sets status bit 3 to the line level.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let mut st = u16::from_le_bytes([self.bytes[STATUS], self.bytes[STATUS + 1]]);
        if asserted {
            st |= STATUS_INTERRUPT;
        } else {
            st &= !STATUS_INTERRUPT;
        }
        self.bytes[STATUS..STATUS + 2].copy_from_slice(&st.to_le_bytes());
    }

    /// The guest address a BAR is currently decoded at, if any: decode enabled in the
    /// command register and a non-zero address programmed that does not wrap.
    pub fn bar_address(&self, bar: BarIndex) -> Option<u64> {
        let info = self.bar_info(bar)?;
        let cmd = self.command();
        let enabled = if info.io {
            cmd & command::IO != 0
        } else {
            cmd & command::MEMORY != 0
        };
        let addr = self.bar_addr[bar as usize];
        if !enabled || addr == 0 {
            return None;
        }
        // Like QEMU's `pci_bar_address`: a BAR whose last byte reaches the top of its space
        // (which is where an all-ones probe leaves it) is not mapped.
        let last = addr.checked_add(info.size - 1)?;
        let limit = if info.io {
            0xFFFF
        } else if info.is_64bit {
            u64::MAX
        } else {
            0xFFFF_FFFF
        };
        if last >= limit {
            return None;
        }
        Some(addr)
    }

    fn mappings(&self) -> [Option<u64>; 5] {
        let mut m = [None; 5];
        for b in BarIndex::ALL {
            m[b as usize] = self.bar_address(b);
        }
        m
    }

    /// Programs a BAR address directly (for VMMs that allocate BARs themselves, e.g.
    /// cloud-hypervisor's `allocate_bars`/`move_bar`). Returns the mapping change, if any.
    pub fn set_bar_address(&mut self, bar: BarIndex, addr: u64) -> Vec<BarMapping> {
        let before = self.mappings();
        if let Some(info) = self.bar_info(bar).copied() {
            self.bar_addr[bar as usize] = addr & !(info.size - 1);
            if !info.is_64bit {
                self.bar_addr[bar as usize] &= 0xFFFF_FFFF;
            }
            self.refresh_bar_bytes();
        }
        self.diff(before)
    }

    fn diff(&self, before: [Option<u64>; 5]) -> Vec<BarMapping> {
        let after = self.mappings();
        BarIndex::ALL
            .iter()
            .filter(|b| before[**b as usize] != after[**b as usize])
            .map(|b| BarMapping {
                bar: *b,
                old: before[*b as usize],
                new: after[*b as usize],
            })
            .collect()
    }

    fn refresh_bar_bytes(&mut self) {
        for reg in 0..6usize {
            self.bytes[BAR0 + reg * 4..BAR0 + reg * 4 + 4].fill(0);
        }
        for info in self.bars.clone() {
            let n = info.bar as usize;
            let addr = self.bar_addr[n];
            let low = (addr as u32) | info.flag_bits();
            self.bytes[BAR0 + n * 4..BAR0 + n * 4 + 4].copy_from_slice(&low.to_le_bytes());
            if info.is_64bit && n + 1 < 6 {
                let high = (addr >> 32) as u32;
                self.bytes[BAR0 + (n + 1) * 4..BAR0 + (n + 1) * 4 + 4]
                    .copy_from_slice(&high.to_le_bytes());
            }
        }
    }

    /// Reads `data.len()` bytes (1, 2 or 4) at `offset`; out-of-range bytes read as 0xFF.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::from(offset)
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0xFF);
        }
    }

    /// Reads the dword at `offset & !3`.
    pub fn read_u32(&self, offset: u16) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset & !3, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes `data` at `offset` (any width); returns the BAR mapping changes it caused.
    pub fn write(&mut self, offset: u16, data: &[u8]) -> Vec<BarMapping> {
        let before = self.mappings();
        let mut bar_dirty = false;
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = usize::from(offset).checked_add(i) else {
                break;
            };
            match o {
                COMMAND => {
                    self.bytes[o] = v & (command::WRITABLE as u8);
                }
                0x05 => {
                    self.bytes[o] = v & ((command::WRITABLE >> 8) as u8);
                }
                0x0C | 0x0D | INTERRUPT_LINE => self.bytes[o] = v,
                0x10..=0x27 => {
                    let reg = (o - BAR0) / 4;
                    let byte = (o - BAR0) % 4;
                    self.write_bar_byte(reg, byte, v);
                    bar_dirty = true;
                }
                _ => {} // read-only or reserved
            }
        }
        if bar_dirty {
            self.refresh_bar_bytes();
        }
        self.diff(before)
    }

    fn write_bar_byte(&mut self, reg: usize, byte: usize, v: u8) {
        // Which BAR does register `reg` belong to (low or high half)?
        for info in self.bars.clone() {
            let n = info.bar as usize;
            let (is_high, hit) = if reg == n {
                (false, true)
            } else if info.is_64bit && reg == n + 1 {
                (true, true)
            } else {
                (false, false)
            };
            if !hit {
                continue;
            }
            let shift = (byte as u32) * 8 + if is_high { 32 } else { 0 };
            let mut raw = self.bar_addr[n];
            raw &= !(0xFFu64 << shift);
            raw |= (v as u64) << shift;
            // Size mask: low flag bits read-only, address bits below the size read as 0.
            let low_mask: u64 = if info.io { !0x3 } else { !0xF };
            let mut addr = raw & !(info.size - 1) & low_mask;
            if !info.is_64bit {
                addr &= 0xFFFF_FFFF;
            }
            if info.io {
                addr &= 0xFFFF_FFFF;
            }
            self.bar_addr[n] = addr;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PciConfig {
        PciConfig::new(
            5,
            true,
            vec![
                BarInfo {
                    bar: BarIndex::Ram,
                    size: 64 << 20,
                    io: false,
                    is_64bit: false,
                    prefetchable: false,
                },
                BarInfo {
                    bar: BarIndex::Io,
                    size: 32,
                    io: true,
                    is_64bit: false,
                    prefetchable: false,
                },
                BarInfo {
                    bar: BarIndex::Vram64,
                    size: 1 << 30,
                    io: false,
                    is_64bit: true,
                    prefetchable: true,
                },
            ],
        )
    }

    #[test]
    fn identity_bytes() {
        let c = cfg();
        assert_eq!(c.read_u32(0), 0x0100_1B36);
        assert_eq!(c.read_u32(8), 0x0300_0005);
        assert_eq!(c.read_u32(0x2C), 0x1100_1AF4);
        assert_eq!(c.read_u32(0x3C) >> 8 & 0xFF, 1);
    }

    #[test]
    fn all_ones_probe_reports_size() {
        let mut c = cfg();
        c.write(0x10, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(c.read_u32(0x10), !((64u32 << 20) - 1));
        c.write(0x1C, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(c.read_u32(0x1C), 0xFFFF_FFE1);
        c.write(0x20, &0xFFFF_FFFFu32.to_le_bytes());
        c.write(0x24, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(c.read_u32(0x20), !((1u32 << 30) - 1) | 0xC);
        assert_eq!(c.read_u32(0x24), 0xFFFF_FFFF);
        // Unimplemented BAR1/BAR2 read as 0 and ignore writes.
        c.write(0x14, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(c.read_u32(0x14), 0);
    }

    #[test]
    fn bar4_high_dword_io_decode_and_direct_programming() {
        let mut c = cfg();
        c.write(0x04, &[(command::MEMORY | command::IO) as u8, 0]);
        c.write(0x20, &0x0000_0000u32.to_le_bytes());
        let ch = c.write(0x24, &0x80u32.to_le_bytes());
        assert_eq!(ch[0].new, Some(0x80_0000_0000));
        assert_eq!(c.read_u32(0x20), 0xC);
        assert_eq!(c.read_u32(0x24), 0x80);
        // I/O BAR decodes in I/O space only with the I/O bit, below 64 KiB.
        c.write(0x1C, &0xC000u32.to_le_bytes());
        assert_eq!(c.bar_address(BarIndex::Io), Some(0xC000));
        assert_eq!(c.read_u32(0x1C), 0xC001);
        c.write(0x04, &[command::MEMORY as u8, 0]);
        assert_eq!(c.bar_address(BarIndex::Io), None);
        // A VMM that allocates BARs itself.
        let ch = c.set_bar_address(BarIndex::Ram, 0xE000_1234);
        assert_eq!(ch[0].new, Some(0xE000_0000), "aligned down to the BAR size");
        assert_eq!(c.read_u32(0x10), 0xE000_0000);
        // Unknown offsets: reads past 256 are 0xFF, writes to read-only fields are ignored.
        let mut b = [0u8; 2];
        c.read(255, &mut b);
        assert_eq!(b[1], 0xFF);
        c.write(0, &[0, 0, 0, 0]);
        assert_eq!(c.read_u32(0), 0x0100_1B36);
    }

    #[test]
    fn mapping_changes_follow_decode_and_address() {
        let mut c = cfg();
        assert!(c.write(0x10, &0xE000_0000u32.to_le_bytes()).is_empty());
        let ch = c.write(0x04, &[command::MEMORY as u8 | command::IO as u8, 0]);
        assert!(ch.contains(&BarMapping {
            bar: BarIndex::Ram,
            old: None,
            new: Some(0xE000_0000)
        }));
        assert_eq!(c.bar_address(BarIndex::Ram), Some(0xE000_0000));
        // Probe with decode on: the all-ones address is not a usable mapping.
        let ch = c.write(0x10, &0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(ch[0].new, None);
        c.write(0x10, &0xD000_0000u32.to_le_bytes());
        assert_eq!(c.bar_address(BarIndex::Ram), Some(0xD000_0000));
        // Status bit 3 follows the line.
        c.set_interrupt_status(true);
        assert_eq!(c.read_u32(4) >> 16 & 0x8, 0x8);
        c.set_interrupt_status(false);
        assert_eq!(c.read_u32(4) >> 16 & 0x8, 0);
    }
}
