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

/// The shape of a 2-D copy for [`GuestMemory::read_rows`]: `rows` rows of `row_len` bytes,
/// `stride` bytes apart in guest memory and `dst_stride` bytes apart in the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowSpan {
    /// Number of rows.
    pub rows: usize,
    /// Bytes copied per row.
    pub row_len: usize,
    /// Distance between row starts in guest memory.
    pub stride: usize,
    /// Distance between row starts in the destination.
    pub dst_stride: usize,
}

impl RowSpan {
    /// Bytes from the first row's start to the last row's end in guest memory (0 for no
    /// rows), or `None` on overflow.
    pub fn src_bytes(&self) -> Option<u64> {
        Self::span(self.rows, self.stride, self.row_len)
    }

    /// Whether a destination of `len` bytes holds every row.
    pub fn fits_dst(&self, len: usize) -> bool {
        Self::span(self.rows, self.dst_stride, self.row_len).is_some_and(|n| n <= len as u64)
    }

    fn span(rows: usize, stride: usize, row_len: usize) -> Option<u64> {
        if rows == 0 {
            return Some(0);
        }
        (rows as u64 - 1)
            .checked_mul(stride as u64)?
            .checked_add(row_len as u64)
    }
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

    /// Checks that `[addr, addr + len)` lies inside one active memslot, without copying.
    ///
    /// The default reads the first and the last byte (a memslot is contiguous, so both ends
    /// in the same slot means the whole range is); implementations can check without a copy.
    fn check_range(&self, addr: QxlPhys, len: u64) -> Result<(), MemError> {
        if len == 0 {
            return Ok(());
        }
        let out = || MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len,
            slot_size: 0,
        };
        let last = addr.checked_add(len - 1).ok_or_else(out)?;
        if last.slot() != addr.slot() || last.generation() != addr.generation() {
            return Err(out());
        }
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        self.read(last, &mut b)
    }

    /// Copies `rows` rows of `row_len` bytes that start `stride` bytes apart at `addr` into
    /// `dst`, where they start `dst_stride` bytes apart (a 2-D copy: a rectangle of a bitmap
    /// into a rectangle of a surface).
    ///
    /// `dst` must hold the rows: `(rows - 1) * dst_stride + row_len` bytes at least, else the
    /// call fails without copying. The default copies row by row with [`GuestMemory::read`];
    /// implementations check the whole source span once and copy without further checks. On
    /// error, rows before the failing one may have been copied.
    fn read_rows(&self, addr: QxlPhys, rows: RowSpan, dst: &mut [u8]) -> Result<(), MemError> {
        let out = || MemError::OutOfSlot {
            slot: addr.slot(),
            addr: addr.0,
            len: rows.src_bytes().unwrap_or(u64::MAX),
            slot_size: 0,
        };
        if !rows.fits_dst(dst.len()) {
            return Err(out());
        }
        for i in 0..rows.rows {
            let a = addr
                .checked_add(i as u64 * rows.stride as u64)
                .ok_or_else(out)?;
            let at = i * rows.dst_stride;
            self.read(a, &mut dst[at..at + rows.row_len])?;
        }
        Ok(())
    }

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
