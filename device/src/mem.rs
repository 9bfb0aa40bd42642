//! The one bounded path from device code to guest memory.
//!
//! Everything the guest hands the device is a [`QxlPhys`]: a memslot id, a
//! generation and a 48-bit offset relative to the slot's start
//! (../shared/reference/qxl-device.md §6). Decoders and the renderer never see a
//! host pointer; they ask a [`GuestMemory`] to copy a whole range out (or in),
//! and a short or out-of-slot access is an error, never a partial copy.

use thiserror::Error;

/// A `QXLPHYSICAL` as written by the guest: `slot_id` in bits 56..63,
/// `generation` in bits 48..55, slot-relative offset in bits 0..47.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QxlPhys(pub u64);

impl QxlPhys {
    /// Bits used for the slot id (ROM `slot_id_bits`).
    pub const SLOT_ID_BITS: u32 = 8;
    /// Bits used for the generation (ROM `slot_gen_bits`).
    pub const SLOT_GEN_BITS: u32 = 8;
    /// Bits of the slot-relative offset.
    pub const OFFSET_BITS: u32 = 64 - Self::SLOT_ID_BITS - Self::SLOT_GEN_BITS;

    /// Builds an address from its parts (what the guest driver computes).
    pub fn new(slot: u8, generation: u8, offset: u64) -> Self {
        let offset = offset & ((1u64 << Self::OFFSET_BITS) - 1);
        QxlPhys(((slot as u64) << 56) | ((generation as u64) << 48) | offset)
    }
    /// The null address (0): "no object" in every QXL pointer field.
    pub fn is_null(self) -> bool {
        self.0 == 0
    }
    /// Memslot id (top 8 bits).
    pub fn slot(self) -> u8 {
        (self.0 >> 56) as u8
    }
    /// Generation (bits 48..55).
    pub fn generation(self) -> u8 {
        (self.0 >> 48) as u8
    }
    /// Offset relative to the slot's `mem_start`.
    pub fn offset(self) -> u64 {
        self.0 & ((1u64 << Self::OFFSET_BITS) - 1)
    }
    /// The address `delta` bytes further on in the same slot, or `None` if the
    /// offset would leave the 48-bit offset space.
    pub fn checked_add(self, delta: u64) -> Option<Self> {
        let off = self.offset().checked_add(delta)?;
        if off >> Self::OFFSET_BITS != 0 {
            return None;
        }
        Some(QxlPhys((self.0 & !((1u64 << Self::OFFSET_BITS) - 1)) | off))
    }
}

/// Why a guest-memory access was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemError {
    /// The slot id is out of range or the slot is not active.
    #[error("memslot {slot} is not active (address {addr:#x})")]
    InactiveSlot {
        /// Slot id taken from the address.
        slot: u8,
        /// The whole address.
        addr: u64,
    },
    /// The generation bits do not match the slot's generation.
    #[error("memslot {slot} generation {got} does not match {expected} (address {addr:#x})")]
    BadGeneration {
        /// Slot id.
        slot: u8,
        /// Generation in the address.
        got: u8,
        /// Generation of the slot.
        expected: u8,
        /// The whole address.
        addr: u64,
    },
    /// `offset + len` leaves the slot (or overflows).
    #[error("access of {len} bytes at {addr:#x} leaves memslot {slot} (size {slot_size:#x})")]
    OutOfSlot {
        /// Slot id.
        slot: u8,
        /// The whole address.
        addr: u64,
        /// Requested length.
        len: u64,
        /// Size of the slot.
        slot_size: u64,
    },
}

/// Guest memory as the device sees it: memslot-relative, bounded, copying.
///
/// Implemented by the device's memslot table (backed by its own BARs) and by
/// test memories. A read copies all of `buf` or fails; nothing is returned by
/// reference, so the guest cannot change a value after it was validated
/// (copy once, then validate: reference §9).
pub trait GuestMemory {
    /// Copies `buf.len()` bytes starting at `addr` into `buf`.
    fn read(&self, addr: QxlPhys, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` into guest memory starting at `addr`.
    fn write(&self, addr: QxlPhys, data: &[u8]) -> Result<(), MemError>;

    /// Reads a little-endian `u32`.
    fn read_u32(&self, addr: QxlPhys) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Reads a little-endian `u64`.
    fn read_u64(&self, addr: QxlPhys) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian `u64`.
    fn write_u64(&self, addr: QxlPhys, v: u64) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qxlphys_parts_round_trip() {
        let a = QxlPhys::new(2, 7, 0x1234_5678);
        assert_eq!(a.slot(), 2);
        assert_eq!(a.generation(), 7);
        assert_eq!(a.offset(), 0x1234_5678);
        assert_eq!(a.0, 0x0207_0000_1234_5678);
    }

    #[test]
    fn checked_add_stays_in_offset_space() {
        let a = QxlPhys::new(1, 0, (1u64 << 48) - 4);
        assert_eq!(a.checked_add(3).unwrap().offset(), (1u64 << 48) - 1);
        assert!(a.checked_add(4).is_none());
        assert!(a.checked_add(u64::MAX).is_none());
    }
}
