//! Shared wire types: rectangles, points, clips, capability sets, channel types.

use super::{wire_struct, Decode, Encode, Reader, WireError};

wire_struct! {
    /// `SpiceRect` (16 bytes). Note the wire order: top, left, bottom, right.
    #[derive(Copy, Hash)]
    pub struct Rect {
        /// first row
        pub top: i32,
        /// first column
        pub left: i32,
        /// row after the last
        pub bottom: i32,
        /// column after the last
        pub right: i32,
    }
}

impl Rect {
    /// The rectangle at (`x`, `y`) of `w` x `h` pixels.
    pub fn new(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect {
            top: y,
            left: x,
            bottom: y.saturating_add(h),
            right: x.saturating_add(w),
        }
    }
    /// Width (0 when inverted).
    pub fn width(&self) -> u32 {
        (i64::from(self.right) - i64::from(self.left)).clamp(0, i64::from(u32::MAX)) as u32
    }
    /// Height (0 when inverted).
    pub fn height(&self) -> u32 {
        (i64::from(self.bottom) - i64::from(self.top)).clamp(0, i64::from(u32::MAX)) as u32
    }
    /// True when the rectangle covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }
    /// True when left <= right and top <= bottom.
    pub fn is_normalized(&self) -> bool {
        self.left <= self.right && self.top <= self.bottom
    }
    /// The common part of two rectangles (possibly empty).
    pub fn intersect(&self, o: &Rect) -> Rect {
        Rect {
            top: self.top.max(o.top),
            left: self.left.max(o.left),
            bottom: self.bottom.min(o.bottom),
            right: self.right.min(o.right),
        }
    }
}

wire_struct! {
    /// `SpicePoint` (8 bytes).
    #[derive(Copy)]
    pub struct Point {
        /// column
        pub x: i32,
        /// row
        pub y: i32,
    }
}

wire_struct! {
    /// `SpicePoint16` (4 bytes).
    #[derive(Copy)]
    pub struct Point16 {
        /// column
        pub x: i16,
        /// row
        pub y: i16,
    }
}

/// Most clip rectangles a message may carry (our bound; spice has none).
pub const MAX_CLIP_RECTS: usize = 4096;

/// `SpiceClip`: type u8 (NONE 0, RECTS 1); RECTS carries num u32 + rects inline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clip(pub Vec<Rect>);

impl Encode for Clip {
    fn encode(&self, out: &mut Vec<u8>) {
        if self.0.is_empty() {
            out.push(0);
        } else {
            out.push(1);
            (self.0.len() as u32).encode(out);
            for r in &self.0 {
                r.encode(out);
            }
        }
    }
}
impl Decode for Clip {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(Clip(Vec::new())),
            1 => {
                let n = r.u32()?;
                if n as usize > MAX_CLIP_RECTS {
                    return Err(WireError::TooLarge {
                        what: "clip rects",
                        len: n.into(),
                        max: MAX_CLIP_RECTS as u64,
                    });
                }
                if n == 0 {
                    return Err(WireError::BadValue {
                        what: "empty clip rect list",
                        value: 0,
                    });
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(Rect::read(r)?);
                }
                Ok(Clip(v))
            }
            t => Err(WireError::BadValue {
                what: "clip type",
                value: t.into(),
            }),
        }
    }
}

/// Most capability words per list (spice-server's bound).
pub const MAX_CAP_WORDS: u32 = 1024;

/// A capability bit set as sent in link messages (word n/32, bit n%32).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps(pub Vec<u32>);

impl Caps {
    /// A set with the given bits.
    pub fn from_bits(bits: &[u32]) -> Caps {
        let mut c = Caps::default();
        for &b in bits {
            c.set(b);
        }
        c
    }
    /// Sets bit `n`.
    pub fn set(&mut self, n: u32) {
        let w = (n / 32) as usize;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (n % 32);
    }
    /// True if bit `n` is set.
    pub fn has(&self, n: u32) -> bool {
        self.0
            .get((n / 32) as usize)
            .is_some_and(|w| w & (1 << (n % 32)) != 0)
    }
}

/// Common capability bits.
pub mod common_cap {
    /// PROTOCOL_AUTH_SELECTION
    pub const AUTH_SELECTION: u32 = 0;
    /// AUTH_SPICE
    pub const AUTH_SPICE: u32 = 1;
    /// AUTH_SASL
    pub const AUTH_SASL: u32 = 2;
    /// MINI_HEADER
    pub const MINI_HEADER: u32 = 3;
}

/// Channel types (u8 on the wire); unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// 1
    Main,
    /// 2
    Display,
    /// 3
    Inputs,
    /// 4
    Cursor,
    /// anything else (playback 5, record 6, ...): refused by this server
    Other(u8),
}

impl From<u8> for ChannelType {
    fn from(v: u8) -> Self {
        match v {
            1 => ChannelType::Main,
            2 => ChannelType::Display,
            3 => ChannelType::Inputs,
            4 => ChannelType::Cursor,
            o => ChannelType::Other(o),
        }
    }
}
impl From<ChannelType> for u8 {
    fn from(v: ChannelType) -> u8 {
        match v {
            ChannelType::Main => 1,
            ChannelType::Display => 2,
            ChannelType::Inputs => 3,
            ChannelType::Cursor => 4,
            ChannelType::Other(o) => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;

    #[test]
    fn rect_is_top_left_bottom_right() {
        let b = round_trip(&Rect::new(1, 2, 3, 4));
        assert_eq!(&b[..4], &2i32.to_le_bytes());
        assert_eq!(&b[4..8], &1i32.to_le_bytes());
    }

    #[test]
    fn clip_round_trips_and_rejects_truncation() {
        round_trip(&Clip(vec![]));
        round_trip(&Clip(vec![Rect::new(0, 0, 5, 5), Rect::new(9, 9, 1, 1)]));
    }

    #[test]
    fn clip_count_is_bounded_before_allocating() {
        let mut b = vec![1u8];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            crate::wire::decode_exact::<Clip>(&b),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn caps_bits() {
        let c = Caps::from_bits(&[0, 3, 33]);
        assert_eq!(c.0, vec![0b1001, 0b10]);
        assert!(c.has(33) && c.has(3) && !c.has(1) && !c.has(200));
    }
}
