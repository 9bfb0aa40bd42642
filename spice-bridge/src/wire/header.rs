//! Data message headers: the full 18-byte `SpiceDataHeader` and the 6-byte mini header.

use super::{Reader, WireError};

/// Which header a linked channel uses (mini iff both sides announced MINI_HEADER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// `SpiceDataHeader`: serial u64, type u16, size u32, sub_list u32.
    Full,
    /// `SpiceMiniDataHeader`: type u16, size u32.
    Mini,
}

/// A decoded data header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// serial (0 for mini headers)
    pub serial: u64,
    /// message type
    pub msg_type: u16,
    /// body size in bytes
    pub size: u32,
    /// sub-message list offset (0 = none; always 0 for mini headers)
    pub sub_list: u32,
}

impl HeaderKind {
    /// Header length in bytes.
    pub const fn size(self) -> usize {
        match self {
            HeaderKind::Full => 18,
            HeaderKind::Mini => 6,
        }
    }

    /// Writes a header for a message of `msg_type` with `size` body bytes.
    pub fn encode(self, serial: u64, msg_type: u16, size: u32, out: &mut Vec<u8>) {
        if self == HeaderKind::Full {
            out.extend_from_slice(&serial.to_le_bytes());
        }
        out.extend_from_slice(&msg_type.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        if self == HeaderKind::Full {
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }

    /// Reads a header from exactly `self.len()` bytes.
    pub fn decode(self, bytes: &[u8]) -> Result<DataHeader, WireError> {
        let mut r = Reader::new(bytes);
        let serial = if self == HeaderKind::Full {
            r.u64()?
        } else {
            0
        };
        let msg_type = r.u16()?;
        let size = r.u32()?;
        let sub_list = if self == HeaderKind::Full {
            r.u32()?
        } else {
            0
        };
        r.expect_empty()?;
        Ok(DataHeader {
            serial,
            msg_type,
            size,
            sub_list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_headers_round_trip_and_reject_truncation() {
        for kind in [HeaderKind::Full, HeaderKind::Mini] {
            let mut b = Vec::new();
            kind.encode(7, 304, 99, &mut b);
            assert_eq!(b.len(), kind.size());
            let h = kind.decode(&b).unwrap();
            assert_eq!((h.msg_type, h.size), (304, 99));
            for cut in 0..b.len() {
                assert!(kind.decode(&b[..cut]).is_err());
            }
        }
        let mut b = Vec::new();
        HeaderKind::Full.encode(7, 1, 2, &mut b);
        assert_eq!(HeaderKind::Full.decode(&b).unwrap().serial, 7);
    }
}
