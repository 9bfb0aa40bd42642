//! Cursor channel messages (reference sheet §6). Server → client only.

use super::types::Point16;
use super::{message, wire_struct, Decode, Encode, Reader, WireError};

/// Cursor flags.
pub mod flags {
    /// no cursor
    pub const NONE: u16 = 1;
    /// store in the cursor cache
    pub const CACHE_ME: u16 = 2;
    /// take from the cursor cache
    pub const FROM_CACHE: u16 = 4;
}

/// Cursor types.
pub mod cursor_type {
    /// 32-bit ARGB
    pub const ALPHA: u8 = 0;
    /// AND mask then XOR mask, 1 bpp
    pub const MONO: u8 = 1;
    /// 32-bit colour + 1-bpp AND mask
    pub const COLOR32: u8 = 6;
}

/// Largest cursor shape data accepted when decoding (256x256 ARGB).
pub const CURSOR_DATA_MAX: usize = 256 * 256 * 4 + 2 * 32 * 256;

wire_struct! {
    /// `SpiceCursorHeader` (17 bytes).
    pub struct CursorHeader {
        /// cache id
        pub unique: u64,
        /// cursor type
        pub cursor_type: u8,
        /// width
        pub width: u16,
        /// height
        pub height: u16,
        /// hot spot x
        pub hot_spot_x: u16,
        /// hot spot y
        pub hot_spot_y: u16,
    }
}

/// `SpiceCursor`: flags, and unless NONE a header and shape data (the rest of the message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// flags
    pub flags: u16,
    /// header (absent iff NONE)
    pub header: Option<CursorHeader>,
    /// shape data (empty for FROM_CACHE)
    pub data: Vec<u8>,
}

impl Encode for Cursor {
    fn encode(&self, out: &mut Vec<u8>) {
        self.flags.encode(out);
        if let Some(h) = &self.header {
            h.encode(out);
            out.extend_from_slice(&self.data);
        }
    }
}
impl Decode for Cursor {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let flags = r.u16()?;
        if flags & flags::NONE != 0 {
            return Ok(Cursor {
                flags,
                header: None,
                data: Vec::new(),
            });
        }
        let header = CursorHeader::read(r)?;
        let data = r.rest();
        if data.len() > CURSOR_DATA_MAX {
            return Err(WireError::TooLarge {
                what: "cursor data",
                len: data.len() as u64,
                max: CURSOR_DATA_MAX as u64,
            });
        }
        Ok(Cursor {
            flags,
            header: Some(header),
            data: data.to_vec(),
        })
    }
}

wire_struct! {
    /// CURSOR_INIT (101).
    pub struct CursorInit {
        /// position
        pub position: Point16,
        /// trail length
        pub trail_length: u16,
        /// trail frequency
        pub trail_frequency: u16,
        /// visible (0/1)
        pub visible: u8,
        /// shape
        pub cursor: Cursor,
    }
}
message!(CursorInit, 101);

wire_struct! {
    /// CURSOR_RESET (102).
    pub struct CursorReset {}
}
message!(CursorReset, 102);

wire_struct! {
    /// CURSOR_SET (103).
    pub struct CursorSet {
        /// position
        pub position: Point16,
        /// visible
        pub visible: u8,
        /// shape
        pub cursor: Cursor,
    }
}
message!(CursorSet, 103);

wire_struct! {
    /// CURSOR_MOVE (104).
    pub struct CursorMove {
        /// position
        pub position: Point16,
    }
}
message!(CursorMove, 104);

wire_struct! {
    /// CURSOR_HIDE (105).
    pub struct CursorHide {}
}
message!(CursorHide, 105);

wire_struct! {
    /// CURSOR_TRAIL (106).
    pub struct CursorTrail {
        /// length
        pub length: u16,
        /// frequency
        pub frequency: u16,
    }
}
message!(CursorTrail, 106);

wire_struct! {
    /// CURSOR_INVAL_ONE (107).
    pub struct CursorInvalOne {
        /// cache id
        pub id: u64,
    }
}
message!(CursorInvalOne, 107);

wire_struct! {
    /// CURSOR_INVAL_ALL (108).
    pub struct CursorInvalAll {}
}
message!(CursorInvalAll, 108);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;
    use crate::wire::{decode_exact, to_vec};

    fn shape() -> Cursor {
        Cursor {
            flags: flags::CACHE_ME,
            header: Some(CursorHeader {
                unique: 5,
                cursor_type: cursor_type::ALPHA,
                width: 2,
                height: 1,
                hot_spot_x: 0,
                hot_spot_y: 0,
            }),
            data: vec![1, 2, 3, 4, 5, 6, 7, 8],
        }
    }

    #[test]
    fn cursor_messages_round_trip() {
        let none = Cursor {
            flags: flags::NONE,
            header: None,
            data: vec![],
        };
        round_trip(&CursorInit {
            position: Point16 { x: 1, y: 2 },
            trail_length: 0,
            trail_frequency: 0,
            visible: 1,
            cursor: none,
        });
        let set = CursorSet {
            position: Point16 { x: 3, y: 4 },
            visible: 1,
            cursor: shape(),
        };
        let b = to_vec(&set);
        assert_eq!(b.len(), 4 + 1 + 2 + 17 + 8);
        assert_eq!(decode_exact::<CursorSet>(&b).unwrap(), set);
        // the fixed part (up to the header) must be present
        for cut in 0..(4 + 1 + 2 + 17) {
            assert!(decode_exact::<CursorSet>(&b[..cut]).is_err());
        }
        round_trip(&CursorMove {
            position: Point16 { x: -1, y: 9 },
        });
        round_trip(&CursorHide {});
        round_trip(&CursorTrail {
            length: 1,
            frequency: 2,
        });
        round_trip(&CursorInvalOne { id: 7 });
        round_trip(&CursorInvalAll {});
        round_trip(&CursorReset {});
    }
}
