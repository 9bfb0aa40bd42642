//! A small guest memory for tests, benches and fuzz targets: a few memslots, each a
//! `Vec<u8>`, with a bump allocator to lay out guest structures.

use crate::mem::{GuestMemory, MemError, QxlPhys, RowSpan};
use std::cell::{Cell, RefCell};

struct Slot {
    generation: u8,
    data: RefCell<Vec<u8>>,
    next: Cell<u64>,
}

/// Guest memory made of up to 256 `Vec`-backed memslots.
#[derive(Default)]
pub struct VecMemory {
    slots: Vec<Option<Slot>>,
}

impl std::fmt::Debug for VecMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecMemory")
            .field("slots", &self.slots.iter().flatten().count())
            .finish()
    }
}

impl VecMemory {
    /// An empty memory (no slots).
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory with slot 1 (generation 0) of `size` bytes — what most tests need.
    pub fn with_slot(size: usize) -> Self {
        let mut m = Self::new();
        m.add_slot(1, 0, size);
        m
    }

    /// Adds (or replaces) slot `id` with `size` zero bytes.
    pub fn add_slot(&mut self, id: u8, generation: u8, size: usize) {
        self.add_slot_with(id, generation, vec![0; size]);
    }

    /// Adds (or replaces) slot `id` holding `data`.
    pub fn add_slot_with(&mut self, id: u8, generation: u8, data: Vec<u8>) {
        let i = id as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        // Allocation starts at offset 8 so that no allocated object sits at the null address.
        self.slots[i] = Some(Slot {
            generation,
            data: RefCell::new(data),
            next: Cell::new(8),
        });
    }

    /// Size of slot `id` (0 if absent).
    pub fn slot_size(&self, id: u8) -> u64 {
        self.slot(id).map_or(0, |s| s.data.borrow().len() as u64)
    }

    fn slot(&self, id: u8) -> Option<&Slot> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    /// Reserves `len` bytes (8-byte aligned) in slot `slot`; `None` when the slot is full
    /// or absent.
    pub fn try_alloc(&self, slot: u8, len: usize) -> Option<QxlPhys> {
        let s = self.slot(slot)?;
        let start = s.next.get().checked_add(7)? & !7;
        let end = start.checked_add(len as u64)?;
        if end > s.data.borrow().len() as u64 {
            return None;
        }
        s.next.set(end);
        Some(QxlPhys::new(slot, s.generation, start))
    }

    /// Reserves `len` bytes in `slot`. Panics when full (test helper).
    pub fn alloc(&self, slot: u8, len: usize) -> QxlPhys {
        self.try_alloc(slot, len)
            .unwrap_or_else(|| panic!("test memory slot {slot} full or absent ({len} bytes)"))
    }

    /// Allocates room for `bytes` in `slot` and writes them. Panics when full (test helper).
    pub fn put(&self, slot: u8, bytes: &[u8]) -> QxlPhys {
        let a = self.alloc(slot, bytes.len());
        self.write(a, bytes).expect("freshly allocated range");
        a
    }

    /// The bytes of slot `id` up to the allocator's high-water mark (for fuzz seeds).
    pub fn used_bytes(&self, id: u8) -> Vec<u8> {
        self.slot(id).map_or_else(Vec::new, |s| {
            let d = s.data.borrow();
            d[..(s.next.get() as usize).min(d.len())].to_vec()
        })
    }

    /// Copies `len` bytes out. Panics on a bad range (test helper).
    pub fn bytes(&self, addr: QxlPhys, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read(addr, &mut v).expect("test read");
        v
    }

    fn check(&self, addr: QxlPhys, len: usize) -> Result<(&Slot, usize), MemError> {
        let slot = self.slot(addr.slot()).ok_or(MemError::InactiveSlot {
            slot: addr.slot(),
            addr: addr.0,
        })?;
        if slot.generation != addr.generation() {
            return Err(MemError::BadGeneration {
                slot: addr.slot(),
                got: addr.generation(),
                expected: slot.generation,
                addr: addr.0,
            });
        }
        let size = slot.data.borrow().len() as u64;
        let out = || MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len: len as u64,
            slot_size: size,
        };
        let end = addr.offset().checked_add(len as u64).ok_or_else(out)?;
        if end > size {
            return Err(out());
        }
        Ok((slot, addr.offset() as usize))
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, addr: QxlPhys, buf: &mut [u8]) -> Result<(), MemError> {
        let (slot, off) = self.check(addr, buf.len())?;
        buf.copy_from_slice(&slot.data.borrow()[off..off + buf.len()]);
        Ok(())
    }

    fn check_range(&self, addr: QxlPhys, len: u64) -> Result<(), MemError> {
        let len = usize::try_from(len).map_err(|_| MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len,
            slot_size: self.slot_size(addr.slot()),
        })?;
        self.check(addr, len).map(|_| ())
    }

    fn read_rows(&self, addr: QxlPhys, rows: RowSpan, dst: &mut [u8]) -> Result<(), MemError> {
        let out = || MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len: rows.src_bytes().unwrap_or(u64::MAX),
            slot_size: self.slot_size(addr.slot()),
        };
        let span = rows
            .src_bytes()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(out)?;
        let (slot, off) = self.check(addr, span)?;
        if !rows.fits_dst(dst.len()) {
            return Err(out());
        }
        let data = slot.data.borrow();
        for i in 0..rows.rows {
            let s = off + i * rows.stride;
            dst[i * rows.dst_stride..][..rows.row_len].copy_from_slice(&data[s..s + rows.row_len]);
        }
        Ok(())
    }

    fn write(&self, addr: QxlPhys, data: &[u8]) -> Result<(), MemError> {
        let (slot, off) = self.check(addr, data.len())?;
        slot.data.borrow_mut()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_by_the_slot() {
        let m = VecMemory::with_slot(64);
        let a = m.put(1, &[1, 2, 3, 4]);
        assert_eq!(m.bytes(a, 4), vec![1, 2, 3, 4]);
        let mut b = [0u8; 8];
        assert!(matches!(
            m.read(QxlPhys::new(1, 0, 60), &mut b),
            Err(MemError::OutOfSlot { .. })
        ));
        assert!(matches!(
            m.read(QxlPhys::new(2, 0, 0), &mut b),
            Err(MemError::InactiveSlot { .. })
        ));
        assert!(matches!(
            m.read(QxlPhys::new(1, 3, 0), &mut b),
            Err(MemError::BadGeneration { .. })
        ));
    }
}
