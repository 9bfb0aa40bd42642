//! Bounded walks of `QXLDataChunk` chains (reference §7 "Images, bitmaps, chunks"; style
//! habit 4: every chain has a TTL, a byte cap and loop detection).

use super::{read_struct, DecodeError, Limits};
use crate::abi::cmd::QxlDataChunk;
use crate::mem::{GuestMemory, MemError, QxlPhys, RowSpan};
use std::collections::HashSet;

/// Size of a `QXLDataChunk` header.
pub(crate) const CHUNK_HEADER: u64 = 20;

type Range = (QxlPhys, u32, u64);

/// Chunk ranges; the common single-chunk case needs no heap allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Ranges {
    #[default]
    Empty,
    One(Range),
    Many(Vec<Range>),
}

impl Ranges {
    fn as_slice(&self) -> &[Range] {
        match self {
            Ranges::Empty => &[],
            Ranges::One(r) => std::slice::from_ref(r),
            Ranges::Many(v) => v,
        }
    }
    fn push(&mut self, r: Range) {
        *self = match std::mem::take(self) {
            Ranges::Empty => Ranges::One(r),
            Ranges::One(a) => Ranges::Many(vec![a, r]),
            Ranges::Many(mut v) => {
                v.push(r);
                Ranges::Many(v)
            }
        };
    }
}

/// A validated list of guest byte ranges that together hold one logical byte string.
///
/// Every range was checked to lie inside its memslot when the chain was walked; the bytes
/// themselves are read later, straight into their destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestChunks {
    /// (address of the data, length, logical offset of its first byte) of each non-empty
    /// chunk, in order.
    ranges: Ranges,
    /// Sum of all lengths.
    total: u64,
}

impl GuestChunks {
    /// One contiguous range (a DIRECT bitmap).
    pub(crate) fn single(
        mem: &dyn GuestMemory,
        addr: QxlPhys,
        len: u64,
    ) -> Result<Self, DecodeError> {
        let mut c = GuestChunks::default();
        // A DIRECT range may exceed u32; split it into u32-sized pieces.
        let mut off = 0u64;
        while off < len {
            let piece = (len - off).min(u32::MAX as u64 & !0xFFF);
            let a = addr
                .checked_add(off)
                .ok_or(DecodeError::AddressOverflow { addr: addr.0, len })?;
            c.push(mem, a, piece as u32)?;
            off += piece;
        }
        Ok(c)
    }

    fn push(&mut self, mem: &dyn GuestMemory, addr: QxlPhys, len: u32) -> Result<(), DecodeError> {
        if len == 0 {
            return Ok(());
        }
        probe_range(mem, addr, len as u64)?;
        self.ranges.push((addr, len, self.total));
        self.total += len as u64;
        Ok(())
    }

    /// Total number of bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of non-empty chunks.
    pub fn count(&self) -> usize {
        self.ranges.as_slice().len()
    }

    /// The `(address, length)` ranges in order.
    pub fn ranges(&self) -> impl Iterator<Item = (QxlPhys, u32)> + '_ {
        self.ranges.as_slice().iter().map(|&(a, l, _)| (a, l))
    }

    /// A read past the end of the chunks (cannot happen for callers that validated sizes),
    /// reported as a slot overrun.
    fn overrun(&self, len: u64) -> MemError {
        let addr = self.ranges.as_slice().first().map_or(0, |r| r.0 .0);
        MemError::OutOfSlot {
            slot: (addr >> 56) as u8,
            addr,
            len,
            slot_size: self.total,
        }
    }

    /// Copies `dst.len()` bytes starting at logical offset `off` into `dst`.
    pub fn read_at(&self, mem: &dyn GuestMemory, off: u64, dst: &mut [u8]) -> Result<(), MemError> {
        let len = dst.len() as u64;
        let end = off.checked_add(len).filter(|&e| e <= self.total);
        if end.is_none() {
            return Err(self.overrun(len));
        }
        // First range containing `off`.
        let mut i = match self.ranges.as_slice().binary_search_by_key(&off, |r| r.2) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let mut done = 0usize;
        let mut pos = off;
        while done < dst.len() {
            let Some(&(addr, rlen, start)) = self.ranges.as_slice().get(i) else {
                break;
            };
            let in_range = pos - start;
            let avail = (rlen as u64 - in_range) as usize;
            let n = avail.min(dst.len() - done);
            // in_range < rlen ≤ u32::MAX, validated by `push`, so the add cannot leave the slot.
            let a = addr.checked_add(in_range).unwrap_or(addr);
            mem.read(a, &mut dst[done..done + n])?;
            done += n;
            pos += n as u64;
            i += 1;
        }
        Ok(())
    }

    /// Copies the rows of `rows` whose first byte is at logical offset `off` into `dst`
    /// (see [`GuestMemory::read_rows`]): one bounded 2-D copy when they all lie in one chunk,
    /// row by row across chunk boundaries otherwise.
    pub fn read_rows(
        &self,
        mem: &dyn GuestMemory,
        off: u64,
        rows: RowSpan,
        dst: &mut [u8],
    ) -> Result<(), MemError> {
        let ranges = self.ranges.as_slice();
        let i = match ranges.binary_search_by_key(&off, |r| r.2) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        if let (Some(&(addr, rlen, start)), Some(span)) = (ranges.get(i), rows.src_bytes()) {
            let in_range = off.wrapping_sub(start);
            if off >= start && in_range.checked_add(span).is_some_and(|e| e <= rlen as u64) {
                // in_range < rlen ≤ u32::MAX, validated by `push`: the add stays in the slot.
                let a = addr.checked_add(in_range).unwrap_or(addr);
                return mem.read_rows(a, rows, dst);
            }
        }
        if !rows.fits_dst(dst.len()) {
            return Err(self.overrun(rows.src_bytes().unwrap_or(u64::MAX)));
        }
        for r in 0..rows.rows {
            // Saturated: an offset past the end is refused by `read_at`.
            let at = off.saturating_add((r as u64).saturating_mul(rows.stride as u64));
            self.read_at(mem, at, &mut dst[r * rows.dst_stride..][..rows.row_len])?;
        }
        Ok(())
    }

    /// Copies all bytes into a new vector.
    pub fn to_vec(&self, mem: &dyn GuestMemory) -> Result<Vec<u8>, MemError> {
        let mut v = vec![0; self.total as usize];
        self.read_at(mem, 0, &mut v)?;
        Ok(v)
    }
}

/// Checks that `[addr, addr+len)` is readable guest memory ([`GuestMemory::check_range`]).
pub(crate) fn probe_range(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    len: u64,
) -> Result<(), DecodeError> {
    if len == 0 {
        return Ok(());
    }
    addr.checked_add(len - 1)
        .ok_or(DecodeError::AddressOverflow { addr: addr.0, len })?;
    Ok(mem.check_range(addr, len)?)
}

/// Walks a chunk chain whose first header (already copied once by the caller) is `first`,
/// with its data at `first_data`.
///
/// Bounds: at most `limits.max_chunks` chunks, at most `max_bytes` bytes in total (and at most
/// `limits.max_data_bytes`), no chunk header visited twice (a loop), every data range inside
/// its memslot.
pub(crate) fn walk(
    mem: &dyn GuestMemory,
    first: &QxlDataChunk,
    first_data: QxlPhys,
    max_bytes: u64,
    limits: &Limits,
) -> Result<GuestChunks, DecodeError> {
    walk_from(mem, None, first, first_data, max_bytes, limits)
}

fn walk_from(
    mem: &dyn GuestMemory,
    first_addr: Option<QxlPhys>,
    first: &QxlDataChunk,
    first_data: QxlPhys,
    max_bytes: u64,
    limits: &Limits,
) -> Result<GuestChunks, DecodeError> {
    let cap = max_bytes.min(limits.max_data_bytes);
    let mut out = GuestChunks::default();
    // Allocated only when a chain has more than one chunk (the common case has one).
    let mut seen: Option<HashSet<u64>> = None;
    let mut header = *first;
    let mut data = first_data;
    let mut n = 0u32;
    loop {
        n += 1;
        if n > limits.max_chunks {
            return Err(DecodeError::TooManyChunks {
                max: limits.max_chunks,
            });
        }
        let size = header.data_size.get();
        let total = out.total + size as u64;
        if total > cap {
            return Err(DecodeError::ChunkDataTooLarge { total, max: cap });
        }
        out.push(mem, data, size)?;
        let next = QxlPhys(header.next_chunk.get());
        if next.is_null() {
            return Ok(out);
        }
        let set = seen.get_or_insert_with(|| first_addr.map(|a| a.0).into_iter().collect());
        if !set.insert(next.0) {
            return Err(DecodeError::ChunkLoop { addr: next.0 });
        }
        header = read_struct::<QxlDataChunk>(mem, next)?;
        data = next
            .checked_add(CHUNK_HEADER)
            .ok_or(DecodeError::AddressOverflow {
                addr: next.0,
                len: CHUNK_HEADER,
            })?;
    }
}

/// Walks the chain starting at the chunk header at `addr`.
pub(crate) fn walk_at(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    max_bytes: u64,
    limits: &Limits,
) -> Result<GuestChunks, DecodeError> {
    let first = read_struct::<QxlDataChunk>(mem, addr)?;
    let data = addr
        .checked_add(CHUNK_HEADER)
        .ok_or(DecodeError::AddressOverflow {
            addr: addr.0,
            len: CHUNK_HEADER,
        })?;
    walk_from(mem, Some(addr), &first, data, max_bytes, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testmem::VecMemory;

    fn chunk(mem: &VecMemory, data: &[u8], next: u64) -> QxlPhys {
        let mut b = Vec::new();
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&next.to_le_bytes());
        b.extend_from_slice(data);
        mem.put(1, &b)
    }

    #[test]
    fn chain_is_read_across_chunks() {
        let m = VecMemory::with_slot(4096);
        let c2 = chunk(&m, &[4, 5, 6], 0);
        let c1 = chunk(&m, &[1, 2, 3], c2.0);
        let c = walk_at(&m, c1, 100, &Limits::default()).unwrap();
        assert_eq!(c.total(), 6);
        assert_eq!(c.to_vec(&m).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        let mut two = [0u8; 2];
        c.read_at(&m, 2, &mut two).unwrap();
        assert_eq!(two, [3, 4]);
    }

    #[test]
    fn chain_loop_is_rejected() {
        let m = VecMemory::with_slot(4096);
        let a = m.alloc(1, 24);
        let b = chunk(&m, &[1], a.0);
        // a -> b -> a
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&1u32.to_le_bytes());
        hdr.extend_from_slice(&0u64.to_le_bytes());
        hdr.extend_from_slice(&b.0.to_le_bytes());
        hdr.push(9);
        m.write(a, &hdr).unwrap();
        let e = walk_at(&m, a, 1 << 20, &Limits::default()).unwrap_err();
        assert!(matches!(e, DecodeError::ChunkLoop { .. }), "{e}");
    }

    #[test]
    fn chain_byte_cap_is_enforced() {
        let m = VecMemory::with_slot(4096);
        let c = chunk(&m, &[0; 100], 0);
        let e = walk_at(&m, c, 99, &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            DecodeError::ChunkDataTooLarge {
                total: 100,
                max: 99
            }
        );
    }

    #[test]
    fn read_rows_across_chunk_boundaries_matches_read_at() {
        let m = VecMemory::with_slot(4096);
        let bytes: Vec<u8> = (0..60u8).collect();
        let c3 = chunk(&m, &bytes[40..], 0);
        let c2 = chunk(&m, &bytes[17..40], c3.0);
        let c1 = chunk(&m, &bytes[..17], c2.0);
        let c = walk_at(&m, c1, 100, &Limits::default()).unwrap();
        // Rows of 5 bytes, 10 apart, from offset 3 (in one chunk) and from 12 (across two).
        for off in [3u64, 12, 30] {
            let rows = RowSpan {
                rows: 3,
                row_len: 5,
                stride: 10,
                dst_stride: 6,
            };
            let mut got = [0u8; 17];
            c.read_rows(&m, off, rows, &mut got).unwrap();
            for r in 0..3 {
                let o = off as usize + r * 10;
                assert_eq!(got[r * 6..r * 6 + 5], bytes[o..o + 5], "off {off} row {r}");
            }
        }
        // Past the end: refused.
        let rows = RowSpan {
            rows: 2,
            row_len: 5,
            stride: 10,
            dst_stride: 5,
        };
        assert!(c.read_rows(&m, 51, rows, &mut [0u8; 10]).is_err());
        assert!(c.read_rows(&m, 0, rows, &mut [0u8; 9]).is_err());
    }
}
