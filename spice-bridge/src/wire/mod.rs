//! Wire layer: Spice message layouts and their serialisation. No I/O and no behaviour here.
//!
//! Every integer is little-endian and every struct packed (reference sheet §0). Each message type
//! has an [`Encode`]/[`Decode`] pair; decoding goes through the bounded [`Reader`] and a whole
//! message body must be consumed ([`decode_exact`]).

pub mod base;
pub mod cursor;
pub mod display;
pub mod header;
pub mod inputs;
pub mod link;
pub mod main;
mod reader;
pub mod types;

pub use reader::Reader;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the layout needs.
    #[error("truncated: needed {needed} bytes, {available} available")]
    Truncated {
        /// bytes needed
        needed: usize,
        /// bytes left
        available: usize,
    },
    /// Bytes left over after the message.
    #[error("{extra} trailing bytes after the message")]
    TrailingData {
        /// how many
        extra: usize,
    },
    /// A length or count above its bound.
    #[error("{what} is {len}, above the maximum {max}")]
    TooLarge {
        /// which field
        what: &'static str,
        /// value received
        len: u64,
        /// bound
        max: u64,
    },
    /// A field holds a value the layout does not allow.
    #[error("{what} has invalid value {value}")]
    BadValue {
        /// which field
        what: &'static str,
        /// value received
        value: u64,
    },
    /// A message type this channel does not accept.
    #[error("unknown message type {msg_type} on channel type {channel_type}")]
    UnknownMessage {
        /// channel type
        channel_type: u8,
        /// message type
        msg_type: u16,
    },
}

/// A value that can be written in wire form.
pub trait Encode {
    /// Appends the wire bytes of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// A value that can be read from wire form.
pub trait Decode: Sized {
    /// Reads one value, consuming exactly its bytes.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// A message with a fixed Spice message type id.
pub trait Message: Encode + Decode {
    /// The message type id in the data header.
    const TYPE: u16;
}

/// Decodes `bytes` as exactly one `T` (trailing bytes are an error).
pub fn decode_exact<T: Decode>(bytes: &[u8]) -> Result<T, WireError> {
    let mut r = Reader::new(bytes);
    let v = T::read(&mut r)?;
    r.expect_empty()?;
    Ok(v)
}

/// Encodes `v` into a fresh vector.
pub fn to_vec<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

macro_rules! prim {
    ($t:ty, $m:ident) => {
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
                r.$m()
            }
        }
    };
}
prim!(u8, u8);
prim!(u16, u16);
prim!(u32, u32);
prim!(u64, u64);
prim!(i16, i16);
prim!(i32, i32);
prim!(i64, i64);

impl<const N: usize> Encode for [u8; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}
impl<const N: usize> Decode for [u8; N] {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.array()
    }
}

/// Defines a packed wire struct whose fields are encoded in order.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $( $(#[$fm])* pub $f: $t ),* }
        impl $crate::wire::Encode for $name {
            #[allow(unused_variables)]
            fn encode(&self, out: &mut Vec<u8>) { $( $crate::wire::Encode::encode(&self.$f, out); )* }
        }
        impl $crate::wire::Decode for $name {
            #[allow(unused_variables)]
            fn read(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::WireError> {
                Ok(Self { $( $f: <$t as $crate::wire::Decode>::read(r)? ),* })
            }
        }
    };
}
pub(crate) use wire_struct;

/// Implements [`Message`] with the given type id.
macro_rules! message {
    ($name:ident, $id:expr) => {
        impl $crate::wire::Message for $name {
            const TYPE: u16 = $id;
        }
    };
}
pub(crate) use message;

/// Test helpers shared by the per-message tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Encodes `v`, decodes it back, checks equality and byte-identical re-encoding, and checks
    /// every strict prefix is rejected.
    pub fn round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
        let bytes = to_vec(v);
        let back: T = decode_exact(&bytes).expect("round trip decodes");
        assert_eq!(&back, v);
        assert_eq!(to_vec(&back), bytes);
        for cut in 0..bytes.len() {
            assert!(
                decode_exact::<T>(&bytes[..cut]).is_err(),
                "prefix of {cut}/{} bytes accepted for {}",
                bytes.len(),
                std::any::type_name::<T>()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        if decode_exact::<T>(&longer).is_ok() {
            // messages that end in "rest of message" data legitimately accept more bytes
        }
        bytes
    }
}
