//! Link-stage layouts (reference sheet §1.2): `SpiceLinkHeader`, `SpiceLinkMess`,
//! `SpiceLinkReply`, the auth mechanism word and the link result.

use super::types::{Caps, MAX_CAP_WORDS};
use super::{wire_struct, Decode, Encode, Reader, WireError};

/// "REDQ" as a little-endian u32.
pub const SPICE_MAGIC: u32 = 0x5144_4552;
/// Protocol major version.
pub const VERSION_MAJOR: u32 = 2;
/// Protocol minor version.
pub const VERSION_MINOR: u32 = 2;
/// Size of a DER SubjectPublicKeyInfo of an RSA-1024 key.
pub const PUBKEY_BYTES: usize = 162;
/// Size of the encrypted ticket (RSA-1024 modulus).
pub const TICKET_BYTES: usize = 128;
/// Fixed part of `SpiceLinkMess`.
pub const LINK_MESS_FIXED: u32 = 18;
/// Fixed part of `SpiceLinkReply`.
pub const LINK_REPLY_FIXED: u32 = 178;
/// Largest `SpiceLinkMess` accepted (spice-server's bound).
pub const LINK_MESS_MAX: u32 = 4096;

/// `SpiceLinkErr` values.
pub mod link_err {
    /// OK
    pub const OK: u32 = 0;
    /// ERROR
    pub const ERROR: u32 = 1;
    /// INVALID_MAGIC
    pub const INVALID_MAGIC: u32 = 2;
    /// INVALID_DATA
    pub const INVALID_DATA: u32 = 3;
    /// VERSION_MISMATCH
    pub const VERSION_MISMATCH: u32 = 4;
    /// NEED_SECURED
    pub const NEED_SECURED: u32 = 5;
    /// NEED_UNSECURED
    pub const NEED_UNSECURED: u32 = 6;
    /// PERMISSION_DENIED
    pub const PERMISSION_DENIED: u32 = 7;
    /// BAD_CONNECTION_ID
    pub const BAD_CONNECTION_ID: u32 = 8;
    /// CHANNEL_NOT_AVAILABLE
    pub const CHANNEL_NOT_AVAILABLE: u32 = 9;
}

wire_struct! {
    /// `SpiceLinkHeader` (16 bytes), sent first by both sides.
    pub struct LinkHeader {
        /// "REDQ"
        pub magic: u32,
        /// 2
        pub major_version: u32,
        /// 2
        pub minor_version: u32,
        /// bytes that follow
        pub size: u32,
    }
}

/// `SpiceLinkMess` (client → server): 18 fixed bytes, then capability words at `caps_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkMess {
    /// 0 for a new session's main channel, else the session id
    pub connection_id: u32,
    /// channel type
    pub channel_type: u8,
    /// channel instance
    pub channel_id: u8,
    /// common capabilities
    pub common_caps: Caps,
    /// channel capabilities
    pub channel_caps: Caps,
}

fn read_caps(r: &mut Reader<'_>, n: u32) -> Result<Caps, WireError> {
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        v.push(r.u32()?);
    }
    Ok(Caps(v))
}

fn check_cap_count(n: u32) -> Result<(), WireError> {
    if n > MAX_CAP_WORDS {
        return Err(WireError::TooLarge {
            what: "capability words",
            len: n.into(),
            max: MAX_CAP_WORDS.into(),
        });
    }
    Ok(())
}

/// Writes the caps counts, the caps offset (`fixed`, the size of the fixed part) and the caps
/// words: the tail shared by `SpiceLinkMess` and `SpiceLinkReply`.
fn encode_caps(out: &mut Vec<u8>, common: &Caps, channel: &Caps, fixed: u32) {
    (common.0.len() as u32).encode(out);
    (channel.0.len() as u32).encode(out);
    fixed.encode(out);
    for w in common.0.iter().chain(&channel.0) {
        w.encode(out);
    }
}

/// Reads the caps counts and offset from `f` (positioned after the fixed fields that precede
/// them) and the caps words from `all` at that offset, which may not point into the first
/// `fixed` bytes; nothing may follow the caps.
fn read_caps_table(f: &mut Reader<'_>, all: &[u8], fixed: u32) -> Result<(Caps, Caps), WireError> {
    let num_common = f.u32()?;
    let num_channel = f.u32()?;
    let caps_offset = f.u32()?;
    check_cap_count(num_common)?;
    check_cap_count(num_channel)?;
    if caps_offset < fixed || caps_offset as usize > all.len() {
        return Err(WireError::BadValue {
            what: "caps_offset",
            value: caps_offset.into(),
        });
    }
    let mut c = Reader::new(&all[caps_offset as usize..]);
    let common_caps = read_caps(&mut c, num_common)?;
    let channel_caps = read_caps(&mut c, num_channel)?;
    c.expect_empty()?;
    Ok((common_caps, channel_caps))
}

impl Encode for LinkMess {
    fn encode(&self, out: &mut Vec<u8>) {
        self.connection_id.encode(out);
        self.channel_type.encode(out);
        self.channel_id.encode(out);
        encode_caps(out, &self.common_caps, &self.channel_caps, LINK_MESS_FIXED);
    }
}

impl Decode for LinkMess {
    /// Reads the whole link message (the reader must hold exactly `LinkHeader.size` bytes); the
    /// caps live at `caps_offset`, which may not point into the fixed part.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let all = r.rest();
        let mut f = Reader::new(all);
        let connection_id = f.u32()?;
        let channel_type = f.u8()?;
        let channel_id = f.u8()?;
        let (common_caps, channel_caps) = read_caps_table(&mut f, all, LINK_MESS_FIXED)?;
        Ok(LinkMess {
            connection_id,
            channel_type,
            channel_id,
            common_caps,
            channel_caps,
        })
    }
}

/// `SpiceLinkReply` (server → client): 178 fixed bytes then capability words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReply {
    /// `SpiceLinkErr`
    pub error: u32,
    /// DER SubjectPublicKeyInfo of the ticket key (zero on error)
    pub pub_key: [u8; PUBKEY_BYTES],
    /// common capabilities
    pub common_caps: Caps,
    /// channel capabilities
    pub channel_caps: Caps,
}

impl LinkReply {
    /// A reply that only carries an error code.
    pub fn error(code: u32) -> LinkReply {
        LinkReply {
            error: code,
            pub_key: [0; PUBKEY_BYTES],
            common_caps: Caps::default(),
            channel_caps: Caps::default(),
        }
    }

    /// Header + reply as one buffer, ready to send.
    pub fn to_bytes_with_header(&self) -> Vec<u8> {
        let body = super::to_vec(self);
        let mut out = super::to_vec(&LinkHeader {
            magic: SPICE_MAGIC,
            major_version: VERSION_MAJOR,
            minor_version: VERSION_MINOR,
            size: body.len() as u32,
        });
        out.extend_from_slice(&body);
        out
    }
}

impl Encode for LinkReply {
    fn encode(&self, out: &mut Vec<u8>) {
        self.error.encode(out);
        self.pub_key.encode(out);
        encode_caps(out, &self.common_caps, &self.channel_caps, LINK_REPLY_FIXED);
    }
}

impl Decode for LinkReply {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let all = r.rest();
        let mut f = Reader::new(all);
        let error = f.u32()?;
        let pub_key = f.array()?;
        let (common_caps, channel_caps) = read_caps_table(&mut f, all, LINK_REPLY_FIXED)?;
        Ok(LinkReply {
            error,
            pub_key,
            common_caps,
            channel_caps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;
    use crate::wire::{decode_exact, to_vec};

    #[test]
    fn link_header_round_trip() {
        let b = round_trip(&LinkHeader {
            magic: SPICE_MAGIC,
            major_version: 2,
            minor_version: 2,
            size: 26,
        });
        assert_eq!(&b[..4], b"REDQ");
    }

    #[test]
    fn link_mess_round_trip_like_spice_gtk() {
        let m = LinkMess {
            connection_id: 0,
            channel_type: 1,
            channel_id: 0,
            common_caps: Caps(vec![0x0d]),
            channel_caps: Caps(vec![0x0f]),
        };
        let b = round_trip(&m);
        assert_eq!(b.len(), 26);
        assert_eq!(&b[14..18], &18u32.to_le_bytes());
    }

    #[test]
    fn link_mess_rejects_bad_caps_offset_and_counts() {
        let mut b = to_vec(&LinkMess::default());
        b[14..18].copy_from_slice(&5u32.to_le_bytes());
        assert!(decode_exact::<LinkMess>(&b).is_err());
        let mut b = to_vec(&LinkMess::default());
        b[6..10].copy_from_slice(&2000u32.to_le_bytes());
        assert!(matches!(
            decode_exact::<LinkMess>(&b),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn link_reply_round_trip() {
        let r = LinkReply {
            error: 0,
            pub_key: [7; PUBKEY_BYTES],
            common_caps: Caps(vec![0x0b]),
            channel_caps: Caps(vec![0x09]),
        };
        let b = round_trip(&r);
        assert_eq!(b.len(), 186);
        let e = round_trip(&LinkReply::error(link_err::PERMISSION_DENIED));
        assert_eq!(e.len(), 178);
        assert_eq!(LinkReply::error(7).to_bytes_with_header().len(), 194);
    }
}
