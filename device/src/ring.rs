//! The RAM header and its three rings (reference qxl-device.md §3, §4, §10.7, §10.11).
//!
//! Ring sizes are compile-time constants; the guest-visible `num_items` is written at reset
//! and never read back. Indices the device owns (command/cursor `cons`, release `prod` and
//! the unpublished chain head) are kept in shadow copies and only written to guest memory,
//! so a guest scribbling on them cannot steer the device.

use crate::abi::dev::{
    ram_off, RingCommand, COMMAND_RING_SIZE, CURSOR_RING_SIZE, FREE_BUNCH_SIZE, QXL_RAM_MAGIC,
    RELEASE_RING_SIZE,
};
use crate::mem::{GuestMemory, MemError, QxlPhys};
use crate::region::{RegionError, SharedRegion};
use core::mem::size_of;
use std::sync::atomic::{fence, Ordering};
use thiserror::Error;
use zerocopy::{FromBytes, IntoBytes};

/// Ring failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RingError {
    /// The guest's producer index is more than a ring ahead of the consumer.
    #[error("{ring} ring indices are garbage: prod {prod}, cons {cons}")]
    BadIndex {
        /// Which ring.
        ring: &'static str,
        /// Guest producer index.
        prod: u32,
        /// Device consumer index.
        cons: u32,
    },
    /// The RAM header could not be accessed (cannot happen with a validated layout).
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// Access to the RAM header at `base` in BAR0.
#[derive(Clone, Copy, Debug)]
pub struct RamHeader<'a> {
    region: &'a SharedRegion,
    base: u64,
}

impl<'a> RamHeader<'a> {
    /// The header at offset `base` of `region`.
    pub fn new(region: &'a SharedRegion, base: u64) -> Self {
        RamHeader { region, base }
    }

    fn off(&self, field: usize) -> u64 {
        // `base + field` stays below the BAR size: the layout reserves 8 KiB for the header.
        self.base + field as u64
    }

    /// Re-initialises the header as on device reset: magic, zeroed interrupt state, rings with
    /// `num_items` = 32/32/8, `notify_on_prod` = 1, everything else zero.
    pub fn init(&self) -> Result<(), RegionError> {
        self.region
            .fill(self.base, size_of::<crate::abi::dev::QxlRam>(), 0)?;
        self.region.store_u32(self.base, QXL_RAM_MAGIC)?;
        for (ring, n) in [
            (ram_off::CMD_RING, COMMAND_RING_SIZE),
            (ram_off::CURSOR_RING, CURSOR_RING_SIZE),
            (ram_off::RELEASE_RING, RELEASE_RING_SIZE),
        ] {
            self.region
                .store_u32(self.off(ring + ram_off::RING_NUM_ITEMS), n)?;
            self.region
                .store_u32(self.off(ring + ram_off::RING_NOTIFY_ON_PROD), 1)?;
        }
        Ok(())
    }

    /// Atomically ORs `bits` into `int_pending`; returns the previous value.
    pub fn raise(&self, bits: u32) -> Result<u32, RegionError> {
        self.region
            .fetch_or_u32(self.off(ram_off::INT_PENDING), bits)
    }

    /// `int_pending`.
    pub fn int_pending(&self) -> Result<u32, RegionError> {
        self.region.load_u32(self.off(ram_off::INT_PENDING))
    }

    /// `int_mask`.
    pub fn int_mask(&self) -> Result<u32, RegionError> {
        self.region.load_u32(self.off(ram_off::INT_MASK))
    }

    /// Copies `buf.len()` bytes of the header starting at `field`.
    pub fn read(&self, field: usize, buf: &mut [u8]) -> Result<(), RegionError> {
        self.region.read(self.off(field), buf)
    }

    /// Reads a header struct (copied once).
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, field: usize) -> Result<T, RegionError> {
        // Copied straight into the value: this runs once per ring entry.
        let mut v = T::new_zeroed();
        self.region.read(self.off(field), v.as_mut_bytes())?;
        Ok(v)
    }

    fn load(&self, field: usize) -> Result<u32, RegionError> {
        self.region.load_u32(self.off(field))
    }

    fn store(&self, field: usize, v: u32) -> Result<(), RegionError> {
        self.region.store_u32(self.off(field), v)
    }

    fn store_u64(&self, field: usize, v: u64) -> Result<(), RegionError> {
        self.region.write(self.off(field), &v.to_le_bytes())
    }
}

/// Which consumer ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    /// Command ring (display commands).
    Command,
    /// Cursor ring.
    Cursor,
}

impl RingKind {
    fn base(self) -> usize {
        match self {
            RingKind::Command => ram_off::CMD_RING,
            RingKind::Cursor => ram_off::CURSOR_RING,
        }
    }
    fn size(self) -> u32 {
        match self {
            RingKind::Command => COMMAND_RING_SIZE,
            RingKind::Cursor => CURSOR_RING_SIZE,
        }
    }
    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            RingKind::Command => "command",
            RingKind::Cursor => "cursor",
        }
    }
}

/// What a pop found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop {
    /// Nothing to consume; `notify_on_prod` was armed.
    Empty,
    /// An entry; `notify` = the guest asked to be told about this `cons` value.
    Item {
        /// The entry (copied).
        cmd: RingCommand,
        /// Raise the ring's consumer interrupt.
        notify: bool,
    },
}

/// Device-side state of the command or cursor ring (the consumer).
#[derive(Clone, Debug)]
pub struct ConsumerRing {
    kind: RingKind,
    cons: u32,
}

impl ConsumerRing {
    /// A ring after reset.
    pub fn new(kind: RingKind) -> Self {
        ConsumerRing { kind, cons: 0 }
    }

    /// The device's consumer index.
    pub fn cons(&self) -> u32 {
        self.cons
    }

    /// Pops one entry (SPICE_RING_CONS_WAIT / POP semantics, reference §4).
    pub fn pop(&mut self, hdr: &RamHeader<'_>) -> Result<Pop, RingError> {
        let base = self.kind.base();
        let size = self.kind.size();
        let mut prod = hdr.load(base + ram_off::RING_PROD)?;
        if prod == self.cons {
            // Empty: ask the producer to notify on its next push, then re-check.
            hdr.store(
                base + ram_off::RING_NOTIFY_ON_PROD,
                self.cons.wrapping_add(1),
            )?;
            fence(Ordering::SeqCst);
            prod = hdr.load(base + ram_off::RING_PROD)?;
            if prod == self.cons {
                return Ok(Pop::Empty);
            }
        }
        let avail = prod.wrapping_sub(self.cons);
        if avail > size {
            return Err(RingError::BadIndex {
                ring: self.kind.name(),
                prod,
                cons: self.cons,
            });
        }
        // Fixed mask from the compile-time size, never the guest's num_items.
        let slot = (self.cons & (size - 1)) as usize;
        let item_off = base + ram_off::RING_ITEMS + slot * size_of::<RingCommand>();
        let cmd: RingCommand = hdr.read_obj(item_off)?;
        self.cons = self.cons.wrapping_add(1);
        hdr.store(base + ram_off::RING_CONS, self.cons)?;
        fence(Ordering::SeqCst);
        let notify = hdr.load(base + ram_off::RING_NOTIFY_ON_CONS)? == self.cons;
        Ok(Pop::Item { cmd, notify })
    }
}

/// Why a release could not be queued.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The command address is NULL (CVE-2019-12155).
    #[error("NULL release info")]
    Null,
    /// The guest's release id is 0, which would end the chain.
    #[error("release id 0 at {0:#x}")]
    ZeroId(u64),
    /// The release info is not writable guest memory.
    #[error("release info not in guest memory: {0}")]
    Mem(#[from] MemError),
    /// The RAM header could not be written (cannot happen with a validated layout).
    #[error("RAM header: {0}")]
    Header(String),
}

/// The release ring as its producer (the device): chain building and publishing.
#[derive(Clone, Debug, Default)]
pub struct ReleaseState {
    prod: u32,
    head: u64,
    last: Option<QxlPhys>,
    pending: u32,
}

impl ReleaseState {
    /// State after reset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Releases queued in the unpublished chain.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Device producer index.
    pub fn prod(&self) -> u32 {
        self.prod
    }

    /// True if the guest has consumed everything published (`prod == cons`).
    pub fn is_empty(&self, hdr: &RamHeader<'_>) -> Result<bool, RegionError> {
        Ok(hdr.load(ram_off::RELEASE_RING + ram_off::RING_CONS)? == self.prod)
    }

    /// True if publishing now would leave no free slot: `prod − cons + 1 ≥ 8` (reference
    /// §10.7; a garbage `cons` counts as full, so nothing unconsumed is overwritten).
    pub fn is_full(&self, hdr: &RamHeader<'_>) -> Result<bool, RegionError> {
        let cons = hdr.load(ram_off::RELEASE_RING + ram_off::RING_CONS)?;
        Ok(self.prod.wrapping_sub(cons) >= RELEASE_RING_SIZE - 1)
    }

    fn slot_off(&self) -> usize {
        ram_off::RELEASE_RING
            + ram_off::RING_ITEMS
            + ((self.prod & (RELEASE_RING_SIZE - 1)) as usize) * 8
    }

    /// Appends the command whose release info is at `info` and whose id is `id` to the
    /// chain: head into the unpublished ring slot, else into the previous release's `next`;
    /// the new release's `next` becomes 0. Only `release_info` is written.
    ///
    /// Returns `Some(notify)` if the chain being built had to be published first (its last
    /// element's memory vanished, e.g. MEMSLOT_DEL); `notify` = raise QXL_INTERRUPT_DISPLAY.
    pub fn push(
        &mut self,
        hdr: &RamHeader<'_>,
        mem: &dyn GuestMemory,
        info: QxlPhys,
        id: u64,
    ) -> Result<Option<bool>, ReleaseError> {
        if info.is_null() {
            return Err(ReleaseError::Null);
        }
        if id == 0 {
            return Err(ReleaseError::ZeroId(info.0));
        }
        // Terminate the new element first: if its memory is gone nothing was changed.
        mem.write_u64(info, 0)?;
        let linked = match self.last {
            None => false,
            Some(prev) => mem.write_u64(prev, id).is_ok(),
        };
        let mut published = None;
        if !linked {
            if self.last.is_some() {
                // The previous element's memory vanished (its slot was deleted): that chain
                // ends there; start a new chain, publishing the old one if possible.
                published = self
                    .publish(hdr, true)
                    .map_err(|e| ReleaseError::Header(e.to_string()))?;
                if self.last.is_some() {
                    // Ring full and previous element unwritable: this release cannot be
                    // delivered; undo nothing (guest memory already has next = 0).
                    return Err(ReleaseError::Mem(MemError::InactiveSlot {
                        slot: info.slot(),
                        addr: info.0,
                    }));
                }
            }
            self.head = id;
            hdr.store_u64(self.slot_off(), id)
                .map_err(|e| ReleaseError::Header(e.to_string()))?;
        }
        self.last = Some(info);
        self.pending = self.pending.saturating_add(1);
        Ok(published)
    }

    /// Publishes the chain if there is one, the ring is not full, and either `flush` or at
    /// least [`FREE_BUNCH_SIZE`] releases are queued. Returns `Some(notify)` if published,
    /// where `notify` = raise QXL_INTERRUPT_DISPLAY.
    pub fn publish(
        &mut self,
        hdr: &RamHeader<'_>,
        flush: bool,
    ) -> Result<Option<bool>, RegionError> {
        if self.pending == 0 {
            return Ok(None);
        }
        if !flush && self.pending < FREE_BUNCH_SIZE {
            return Ok(None);
        }
        if self.is_full(hdr)? {
            return Ok(None);
        }
        self.prod = self.prod.wrapping_add(1);
        hdr.store(ram_off::RELEASE_RING + ram_off::RING_PROD, self.prod)?;
        fence(Ordering::SeqCst);
        let notify = hdr.load(ram_off::RELEASE_RING + ram_off::RING_NOTIFY_ON_PROD)? == self.prod;
        self.head = 0;
        hdr.store_u64(self.slot_off(), 0)?;
        self.last = None;
        self.pending = 0;
        Ok(Some(notify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memslot::{Backing, MemSlots, SlotMemory, SlotWindow};
    use crate::pci::BarIndex;

    const HDR: u64 = 0x1000;

    fn setup() -> (SharedRegion, SharedRegion, MemSlots) {
        let ram = SharedRegion::new("ram", 0x4000).unwrap();
        let vram = SharedRegion::new("vram", 0x1000).unwrap();
        RamHeader::new(&ram, HDR).init().unwrap();
        let mut slots = MemSlots::default();
        let w = [SlotWindow {
            bar: BarIndex::Ram,
            base: 0x10_0000,
            size: 0x4000,
            backing: Backing::Ram,
        }];
        slots.add(1, 0x10_0000, 0x10_1000, &w).unwrap();
        (ram, vram, slots)
    }

    fn push_item(ram: &SharedRegion, ring: usize, data: u64, ty: u32) {
        let h = RamHeader::new(ram, HDR);
        let prod = h.load(ring + ram_off::RING_PROD).unwrap();
        let slot = (prod & 31) as usize;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&data.to_le_bytes());
        b[8..12].copy_from_slice(&ty.to_le_bytes());
        ram.write(HDR + (ring + ram_off::RING_ITEMS + slot * 16) as u64, &b)
            .unwrap();
        h.store(ring + ram_off::RING_PROD, prod.wrapping_add(1))
            .unwrap();
    }

    #[test]
    fn pop_empty_arms_notify_on_prod_and_pop_notifies_on_cons() {
        let (ram, _v, _s) = setup();
        let h = RamHeader::new(&ram, HDR);
        let mut r = ConsumerRing::new(RingKind::Command);
        assert_eq!(r.pop(&h).unwrap(), Pop::Empty);
        assert_eq!(
            h.load(ram_off::CMD_RING + ram_off::RING_NOTIFY_ON_PROD)
                .unwrap(),
            1
        );
        push_item(&ram, ram_off::CMD_RING, 0x42, 1);
        push_item(&ram, ram_off::CMD_RING, 0x43, 1);
        h.store(ram_off::CMD_RING + ram_off::RING_NOTIFY_ON_CONS, 2)
            .unwrap();
        let Pop::Item { cmd, notify } = r.pop(&h).unwrap() else {
            panic!("empty")
        };
        assert_eq!((cmd.data.get(), notify), (0x42, false));
        let Pop::Item { cmd, notify } = r.pop(&h).unwrap() else {
            panic!("empty")
        };
        assert_eq!((cmd.data.get(), notify), (0x43, true));
        assert_eq!(h.load(ram_off::CMD_RING + ram_off::RING_CONS).unwrap(), 2);
        assert_eq!(r.pop(&h).unwrap(), Pop::Empty);
        assert_eq!(
            h.load(ram_off::CMD_RING + ram_off::RING_NOTIFY_ON_PROD)
                .unwrap(),
            3
        );
    }

    #[test]
    fn indices_wrap_and_garbage_is_an_error() {
        let (ram, _v, _s) = setup();
        let h = RamHeader::new(&ram, HDR);
        let mut r = ConsumerRing::new(RingKind::Cursor);
        // 100 pushes and pops across several wraps of the 32-entry ring.
        for i in 0..100u64 {
            push_item(&ram, ram_off::CURSOR_RING, i + 1, 3);
            assert!(matches!(r.pop(&h).unwrap(), Pop::Item { cmd, .. } if cmd.data.get() == i + 1));
        }
        // A guest-cons overwrite does not move the device's consumer.
        h.store(ram_off::CURSOR_RING + ram_off::RING_CONS, 5)
            .unwrap();
        assert_eq!(r.pop(&h).unwrap(), Pop::Empty);
        h.store(ram_off::CURSOR_RING + ram_off::RING_PROD, 100 + 33)
            .unwrap();
        assert!(matches!(
            r.pop(&h),
            Err(RingError::BadIndex {
                prod: 133,
                cons: 100,
                ..
            })
        ));
        // Exactly a full ring is fine.
        h.store(ram_off::CURSOR_RING + ram_off::RING_PROD, 100 + 32)
            .unwrap();
        assert!(matches!(r.pop(&h), Ok(Pop::Item { .. })));
    }

    #[test]
    fn release_chain_head_in_ring_next_in_previous_info() {
        let (ram, vram, slots) = setup();
        let h = RamHeader::new(&ram, HDR);
        let mem = SlotMemory::new(&slots, &ram, &vram);
        let mut rs = ReleaseState::new();
        let a = QxlPhys::new(1, 0, 0x100);
        let b = QxlPhys::new(1, 0, 0x200);
        mem.write_u64(a, 11).unwrap();
        mem.write_u64(b, 22).unwrap();
        rs.push(&h, &mem, a, 11).unwrap();
        rs.push(&h, &mem, b, 22).unwrap();
        let item0 = HDR + (ram_off::RELEASE_RING + ram_off::RING_ITEMS) as u64;
        let mut buf = [0u8; 8];
        ram.read(item0, &mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), 11, "head in the unpublished slot");
        assert_eq!(mem.read_u64(a).unwrap(), 22, "a.next = b's id");
        assert_eq!(mem.read_u64(b).unwrap(), 0, "b ends the chain");
        // Not a bunch yet.
        assert_eq!(rs.publish(&h, false).unwrap(), None);
        // Flush: prod 1, notify (notify_on_prod = 1), next slot zeroed.
        assert_eq!(rs.publish(&h, true).unwrap(), Some(true));
        assert_eq!(
            h.load(ram_off::RELEASE_RING + ram_off::RING_PROD).unwrap(),
            1
        );
        ram.read(item0 + 8, &mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), 0);
        // Nothing pending: flush publishes nothing.
        assert_eq!(rs.publish(&h, true).unwrap(), None);
        // NULL, id 0 and unmapped infos are refused without writing anything.
        assert_eq!(rs.push(&h, &mem, QxlPhys(0), 5), Err(ReleaseError::Null));
        assert!(matches!(
            rs.push(&h, &mem, a, 0),
            Err(ReleaseError::ZeroId(_))
        ));
        assert!(matches!(
            rs.push(&h, &mem, QxlPhys::new(3, 0, 0), 5),
            Err(ReleaseError::Mem(_))
        ));
        assert_eq!(rs.pending(), 0);
    }

    #[test]
    fn release_publish_stops_at_seven_unconsumed_chains() {
        let (ram, vram, slots) = setup();
        let h = RamHeader::new(&ram, HDR);
        let mem = SlotMemory::new(&slots, &ram, &vram);
        let mut rs = ReleaseState::new();
        for i in 0..9u64 {
            let a = QxlPhys::new(1, 0, 0x100 + i * 8);
            rs.push(&h, &mem, a, i + 1).unwrap();
            let published = rs.publish(&h, true).unwrap();
            assert_eq!(published.is_some(), i < 7, "chain {i}");
        }
        assert_eq!(rs.prod(), 7);
        assert_eq!(
            rs.pending(),
            2,
            "two releases wait in the chain being built"
        );
    }
}
