//! Memslots (reference qxl-device.md §6) and the [`GuestMemory`] implementation over them.
//!
//! A slot is validated once, at MEMSLOT_ADD: id < 8, not already active, start ≤ end, and
//! `[start, end)` inside BAR0, BAR1 or BAR4 at their current guest addresses. It is recorded
//! as (backing region, offset in the region, size), so a later BAR move does not change what
//! the slot means. Every access then checks slot id, activity, generation and
//! `offset + len ≤ size` with checked arithmetic (CVE-2019-3813, CVE-2022-4144), and copies.

use crate::abi::dev::NUM_MEMSLOTS;
use crate::mem::{GuestMemory, MemError, QxlPhys, RowSpan};
use crate::pci::BarIndex;
use crate::region::SharedRegion;
use thiserror::Error;

/// Which backing a slot lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// BAR0.
    Ram,
    /// BAR1 / BAR4 (the same memory).
    Vram,
}

/// One active memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSlot {
    /// Backing region.
    pub backing: Backing,
    /// Offset of the slot's first byte in the backing.
    pub region_offset: u64,
    /// Size in bytes (`mem_end − mem_start`).
    pub size: u64,
    /// Subtracted from a QXLPHYSICAL offset before use (0 for guest slots; the BAR address
    /// for the qxl-1 compat slot).
    pub delta: u64,
    /// Generation the guest must put in its addresses.
    pub generation: u8,
    /// The guest-physical start the guest gave.
    pub guest_start: u64,
}

/// A BAR the guest may put a memslot in, as currently mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotWindow {
    /// Which BAR.
    pub bar: BarIndex,
    /// Guest address it is decoded at.
    pub base: u64,
    /// BAR size.
    pub size: u64,
    /// Backing memory of the BAR.
    pub backing: Backing,
}

/// Why MEMSLOT_ADD / MEMSLOT_DEL was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotError {
    /// Slot id ≥ 8.
    #[error("memslot id {0} out of range (< 8)")]
    BadId(u32),
    /// The slot is already active.
    #[error("memslot {0} is already active")]
    AlreadyActive(u8),
    /// `mem_start > mem_end`.
    #[error("memslot range start {start:#x} > end {end:#x}")]
    Inverted {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// The range is not inside a RAM/VRAM BAR as currently mapped.
    #[error("memslot range {start:#x}..{end:#x} is not inside a mapped RAM/VRAM BAR")]
    OutsideBars {
        /// Start.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
}

/// The table of 8 memslots.
#[derive(Clone, Debug, Default)]
pub struct MemSlots {
    slots: [Option<MemSlot>; NUM_MEMSLOTS as usize],
}

impl MemSlots {
    /// Validates and activates slot `id` for the guest-physical range `[start, end)`.
    pub fn add(
        &mut self,
        id: u32,
        start: u64,
        end: u64,
        windows: &[SlotWindow],
    ) -> Result<MemSlot, SlotError> {
        let idx = usize::try_from(id)
            .ok()
            .filter(|i| *i < self.slots.len())
            .ok_or(SlotError::BadId(id))?;
        if self.slots[idx].is_some() {
            return Err(SlotError::AlreadyActive(idx as u8));
        }
        if start > end {
            return Err(SlotError::Inverted { start, end });
        }
        let win = windows
            .iter()
            .find(|w| {
                w.base
                    .checked_add(w.size)
                    .is_some_and(|bar_end| w.base <= start && end <= bar_end)
            })
            .ok_or(SlotError::OutsideBars { start, end })?;
        // Safe subtractions: base ≤ start ≤ end checked above.
        let slot = MemSlot {
            backing: win.backing,
            region_offset: start - win.base,
            size: end - start,
            delta: 0,
            generation: 0,
            guest_start: start,
        };
        self.slots[idx] = Some(slot);
        Ok(slot)
    }

    /// Installs a slot directly (the qxl-1 compat slot 0 of SET_MODE).
    pub fn install(&mut self, id: u8, slot: MemSlot) {
        if let Some(s) = self.slots.get_mut(usize::from(id)) {
            *s = Some(slot);
        }
    }

    /// Deactivates slot `id` (deleting an inactive slot is allowed, as in QEMU).
    pub fn del(&mut self, id: u32) -> Result<(), SlotError> {
        let idx = usize::try_from(id)
            .ok()
            .filter(|i| *i < self.slots.len())
            .ok_or(SlotError::BadId(id))?;
        self.slots[idx] = None;
        Ok(())
    }

    /// Deactivates every slot.
    pub fn clear(&mut self) {
        self.slots = Default::default();
    }

    /// Slot `id`, if active.
    pub fn get(&self, id: u8) -> Option<&MemSlot> {
        self.slots.get(usize::from(id)).and_then(|s| s.as_ref())
    }

    /// Resolves `addr` + `len` to (backing, offset in backing), checking everything.
    pub fn resolve(&self, addr: QxlPhys, len: usize) -> Result<(Backing, u64), MemError> {
        let id = addr.slot();
        let slot = self.get(id).ok_or(MemError::InactiveSlot {
            slot: id,
            addr: addr.0,
        })?;
        if addr.generation() != slot.generation {
            return Err(MemError::BadGeneration {
                slot: id,
                got: addr.generation(),
                expected: slot.generation,
                addr: addr.0,
            });
        }
        let out = MemError::OutOfSlot {
            slot: id,
            addr: addr.0,
            len: len as u64,
            slot_size: slot.size,
        };
        let offset = addr.offset().checked_sub(slot.delta).ok_or(out.clone())?;
        let end = offset.checked_add(len as u64).ok_or(out.clone())?;
        // `end` is exclusive: an access may touch the slot's last byte, never one past it.
        if end > slot.size {
            return Err(out);
        }
        let region_off = slot.region_offset.checked_add(offset).ok_or(out)?;
        Ok((slot.backing, region_off))
    }
}

/// [`GuestMemory`] over the device's memslots and BAR backings.
#[derive(Clone, Copy, Debug)]
pub struct SlotMemory<'a> {
    slots: &'a MemSlots,
    ram: &'a SharedRegion,
    vram: &'a SharedRegion,
}

impl<'a> SlotMemory<'a> {
    /// A view of guest memory through `slots`.
    pub fn new(slots: &'a MemSlots, ram: &'a SharedRegion, vram: &'a SharedRegion) -> Self {
        SlotMemory { slots, ram, vram }
    }

    fn region(&self, b: Backing) -> &'a SharedRegion {
        match b {
            Backing::Ram => self.ram,
            Backing::Vram => self.vram,
        }
    }
}

impl SlotMemory<'_> {
    /// The error for an access of `len` bytes at `addr` that does not fit its slot.
    fn out_of_slot(&self, addr: QxlPhys, len: u64) -> MemError {
        MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len,
            slot_size: self.slots.get(addr.slot()).map_or(0, |s| s.size),
        }
    }
}

impl GuestMemory for SlotMemory<'_> {
    fn read(&self, addr: QxlPhys, buf: &mut [u8]) -> Result<(), MemError> {
        let (b, off) = self.slots.resolve(addr, buf.len())?;
        self.region(b)
            .read(off, buf)
            .map_err(|_| self.out_of_slot(addr, buf.len() as u64))
    }

    fn check_range(&self, addr: QxlPhys, len: u64) -> Result<(), MemError> {
        let n = usize::try_from(len).map_err(|_| self.out_of_slot(addr, len))?;
        self.slots.resolve(addr, n).map(|_| ())
    }

    fn read_rows(&self, addr: QxlPhys, rows: RowSpan, dst: &mut [u8]) -> Result<(), MemError> {
        let out = || self.out_of_slot(addr, rows.src_bytes().unwrap_or(u64::MAX));
        let span = rows
            .src_bytes()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(out)?;
        let (b, off) = self.slots.resolve(addr, span)?;
        self.region(b).read_rows(off, rows, dst).map_err(|_| out())
    }

    fn write(&self, addr: QxlPhys, data: &[u8]) -> Result<(), MemError> {
        let (b, off) = self.slots.resolve(addr, data.len())?;
        self.region(b)
            .write(off, data)
            .map_err(|_| self.out_of_slot(addr, data.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Vec<SlotWindow> {
        vec![
            SlotWindow {
                bar: BarIndex::Ram,
                base: 0xE000_0000,
                size: 0x10_0000,
                backing: Backing::Ram,
            },
            SlotWindow {
                bar: BarIndex::Vram,
                base: 0xD000_0000,
                size: 0x1_0000,
                backing: Backing::Vram,
            },
        ]
    }

    #[test]
    fn add_validates_id_activity_order_and_bars() {
        let mut s = MemSlots::default();
        let w = windows();
        assert_eq!(
            s.add(8, 0xE000_0000, 0xE000_1000, &w),
            Err(SlotError::BadId(8))
        );
        assert!(s.add(1, 0xE000_0000, 0xE010_0000, &w).is_ok());
        assert_eq!(
            s.add(1, 0xE000_0000, 0xE000_1000, &w),
            Err(SlotError::AlreadyActive(1))
        );
        assert!(matches!(
            s.add(2, 0xE000_2000, 0xE000_1000, &w),
            Err(SlotError::Inverted { .. })
        ));
        // One byte past BAR0.
        assert!(matches!(
            s.add(2, 0xE000_0000, 0xE010_0001, &w),
            Err(SlotError::OutsideBars { .. })
        ));
        // Spanning two BARs / in no BAR.
        assert!(s.add(2, 0xD000_0000, 0xE000_0010, &w).is_err());
        assert!(s.add(2, 0x1000, 0x2000, &w).is_err());
        assert!(s.add(2, 0xD000_8000, 0xD001_0000, &w).is_ok());
        assert_eq!(s.get(2).unwrap().region_offset, 0x8000);
    }

    #[test]
    fn resolve_off_by_one_and_generation() {
        let mut s = MemSlots::default();
        s.add(1, 0xE000_0000, 0xE000_1000, &windows()).unwrap();
        assert_eq!(
            s.resolve(QxlPhys::new(1, 0, 0xFFC), 4).unwrap(),
            (Backing::Ram, 0xFFC)
        );
        assert!(matches!(
            s.resolve(QxlPhys::new(1, 0, 0xFFD), 4),
            Err(MemError::OutOfSlot { .. })
        ));
        assert!(matches!(
            s.resolve(QxlPhys::new(1, 0, 0x1000), 0),
            Ok((Backing::Ram, 0x1000))
        ));
        assert!(s.resolve(QxlPhys::new(1, 0, 0x1000), 1).is_err());
        assert!(matches!(
            s.resolve(QxlPhys::new(1, 1, 0), 4),
            Err(MemError::BadGeneration { .. })
        ));
        assert!(matches!(
            s.resolve(QxlPhys::new(8, 0, 0), 4),
            Err(MemError::InactiveSlot { slot: 8, .. })
        ));
        assert!(matches!(
            s.resolve(QxlPhys::new(255, 0, 0), 4),
            Err(MemError::InactiveSlot { .. })
        ));
        assert!(s
            .resolve(QxlPhys::new(1, 0, (1 << 48) - 1), usize::MAX)
            .is_err());
    }

    #[test]
    fn read_rows_and_check_range_are_bounded_by_the_slot() {
        let ram = SharedRegion::new("ram", 0x10_0000).unwrap();
        let vram = SharedRegion::new("vram", 0x1_0000).unwrap();
        let pattern: Vec<u8> = (0..0x1000u32).map(|i| (i * 7) as u8).collect();
        ram.write(0, &pattern).unwrap();
        let mut s = MemSlots::default();
        s.add(1, 0xE000_0000, 0xE000_1000, &windows()).unwrap();
        let m = SlotMemory::new(&s, &ram, &vram);

        // 3 rows of 4 bytes, 16 apart, into a destination with rows 8 apart.
        let rows = RowSpan {
            rows: 3,
            row_len: 4,
            stride: 16,
            dst_stride: 8,
        };
        let mut dst = [0xAAu8; 20];
        m.read_rows(QxlPhys::new(1, 0, 0x100), rows, &mut dst)
            .unwrap();
        for r in 0..3 {
            assert_eq!(dst[r * 8..r * 8 + 4], pattern[0x100 + r * 16..][..4]);
            if r < 2 {
                assert_eq!(dst[r * 8 + 4..r * 8 + 8], [0xAA; 4], "gap untouched");
            }
        }

        // The last row ends exactly at the slot's end: allowed; one byte further: refused
        // before anything is copied.
        let end = 0x1000 - (2 * 16 + 4);
        m.read_rows(QxlPhys::new(1, 0, end), rows, &mut dst)
            .unwrap();
        let mut dst = [0xAAu8; 20];
        assert!(matches!(
            m.read_rows(QxlPhys::new(1, 0, end + 1), rows, &mut dst),
            Err(MemError::OutOfSlot { .. })
        ));
        assert_eq!(dst, [0xAA; 20]);
        // A destination too small for the rows, a wrong generation, a huge span.
        assert!(m
            .read_rows(QxlPhys::new(1, 0, 0), rows, &mut [0u8; 19])
            .is_err());
        assert!(matches!(
            m.read_rows(QxlPhys::new(1, 1, 0), rows, &mut [0u8; 20]),
            Err(MemError::BadGeneration { .. })
        ));
        let huge = RowSpan {
            rows: usize::MAX,
            stride: usize::MAX,
            ..rows
        };
        assert!(m.read_rows(QxlPhys::new(1, 0, 0), huge, &mut dst).is_err());

        assert!(m.check_range(QxlPhys::new(1, 0, 0xFFF), 1).is_ok());
        assert!(m.check_range(QxlPhys::new(1, 0, 0xFFF), 2).is_err());
        assert!(m.check_range(QxlPhys::new(1, 0, 0), u64::MAX).is_err());
        assert!(m.check_range(QxlPhys::new(2, 0, 0), 1).is_err());
    }
}
