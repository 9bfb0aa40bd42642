//! Validated decoding: message bytes → typed values. Framing ([`Header::decode`]) bounds the
//! message size before anything is buffered; [`Request::decode`] checks that each command's body
//! holds its fixed part (and, for writes, the data it announces) and caps read sizes. Nothing
//! here touches the device: index checks against the announced tables and the behaviour belong
//! to [`crate::server`].

use zerocopy::FromBytes;

use crate::abi::{
    cmd, DmaMapBody, DmaUnmapBody, IrqInfoRequest, MsgHeader, RegionAccess, RegionInfoRequest,
    SetIrqsBody, VersionBody, FLAG_NO_REPLY, FLAG_REPLY, HDR_LEN,
};

/// Largest REGION_READ/WRITE payload announced to the VMM (`max_data_xfer_size`).
pub const MAX_DATA_XFER: u32 = 1 << 20;
/// Largest message accepted: a REGION_WRITE of [`MAX_DATA_XFER`] bytes plus its headers.
pub const MAX_MSG: usize = HDR_LEN + std::mem::size_of::<RegionAccess>() + MAX_DATA_XFER as usize;

/// A message that cannot be framed: the connection cannot continue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than [`HDR_LEN`] bytes.
    #[error("short header ({0} bytes)")]
    ShortHeader(usize),
    /// The header's size is below a header or above [`MAX_MSG`].
    #[error("message {id} (command {command}) has size {size}")]
    BadSize {
        /// Message id.
        id: u16,
        /// Command number.
        command: u16,
        /// The size field.
        size: u32,
    },
}

/// A request body that does not decode; the VMM gets an error reply and the connection goes on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is shorter than the command's fixed part.
    #[error("command {command}: body of {got} bytes, needs {need}")]
    Truncated {
        /// Command number.
        command: u16,
        /// Bytes the fixed part needs.
        need: usize,
        /// Bytes received.
        got: usize,
    },
    /// A REGION_WRITE announces more data than its body carries.
    #[error("region write of {count} bytes carries only {got}")]
    WriteDataShort {
        /// The count field.
        count: u32,
        /// Data bytes present.
        got: usize,
    },
    /// A REGION_READ larger than [`MAX_DATA_XFER`].
    #[error("region read of {0} bytes exceeds max_data_xfer_size")]
    ReadTooLarge(u32),
    /// A command this server does not implement.
    #[error("unsupported command {0}")]
    Unsupported(u16),
}

impl DecodeError {
    /// The errno sent back in the error reply.
    pub fn errno(&self) -> i32 {
        match self {
            DecodeError::Unsupported(_) => libc::ENOTSUP,
            _ => libc::EINVAL,
        }
    }
}

/// A framed message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message id.
    pub id: u16,
    /// Command number ([`cmd`]).
    pub command: u16,
    /// Whole message size, header included; within `HDR_LEN..=MAX_MSG`.
    pub size: usize,
    /// Header flags.
    pub flags: u32,
    /// errno field (replies only).
    pub error: u32,
}

impl Header {
    /// Decodes the first [`HDR_LEN`] bytes of `b` and bounds the message size.
    pub fn decode(b: &[u8]) -> Result<Header, FrameError> {
        let (h, _) =
            MsgHeader::read_from_prefix(b).map_err(|_| FrameError::ShortHeader(b.len()))?;
        let size = h.size.get();
        let h = Header {
            id: h.id.get(),
            command: h.command.get(),
            size: size as usize,
            flags: h.flags.get(),
            error: h.error.get(),
        };
        if !(HDR_LEN..=MAX_MSG).contains(&h.size) {
            return Err(FrameError::BadSize {
                id: h.id,
                command: h.command,
                size,
            });
        }
        Ok(h)
    }

    /// Whether the message is a reply (this server sends no requests, so it is dropped).
    pub fn is_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    /// Whether the sender asked for no reply (a posted write).
    pub fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        self.size.saturating_sub(HDR_LEN)
    }
}

/// A decoded request. Borrowed parts point into the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// VFIO_USER_VERSION.
    Version {
        /// Client major version.
        major: u16,
        /// Client minor version.
        minor: u16,
        /// The client's JSON capabilities (NUL-terminated, unvalidated text).
        capabilities: &'a [u8],
    },
    /// VFIO_USER_DMA_MAP (the descriptor, if any, travels beside the message).
    DmaMap {
        /// Flags.
        flags: u32,
        /// Offset in the descriptor.
        offset: u64,
        /// IOVA.
        address: u64,
        /// Size.
        size: u64,
    },
    /// VFIO_USER_DMA_UNMAP; the body is echoed in the reply.
    DmaUnmap(DmaUnmapBody),
    /// VFIO_USER_DEVICE_GET_INFO.
    DeviceGetInfo,
    /// VFIO_USER_DEVICE_GET_REGION_INFO.
    GetRegionInfo {
        /// The client's buffer size.
        argsz: u32,
        /// Region index (not yet checked against the table).
        index: u32,
    },
    /// VFIO_USER_DEVICE_GET_IRQ_INFO.
    GetIrqInfo {
        /// IRQ index (not yet checked against the table).
        index: u32,
    },
    /// VFIO_USER_DEVICE_SET_IRQS.
    SetIrqs {
        /// `VFIO_IRQ_SET_*` flags.
        flags: u32,
        /// IRQ index (not yet checked against the table).
        index: u32,
        /// First vector.
        start: u32,
        /// Vector count.
        count: u32,
    },
    /// VFIO_USER_REGION_READ; `count` is at most [`MAX_DATA_XFER`].
    RegionRead(RegionAccess),
    /// VFIO_USER_REGION_WRITE with exactly `count` data bytes (any trailing bytes ignored).
    RegionWrite(RegionAccess, &'a [u8]),
    /// VFIO_USER_DEVICE_RESET.
    DeviceReset,
}

fn fixed<T: FromBytes>(command: u16, body: &[u8]) -> Result<T, DecodeError> {
    T::read_from_prefix(body)
        .map(|(v, _)| v)
        .map_err(|_| DecodeError::Truncated {
            command,
            need: std::mem::size_of::<T>(),
            got: body.len(),
        })
}

impl<'a> Request<'a> {
    /// Decodes the body of a request with command `command`.
    pub fn decode(command: u16, body: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        Ok(match command {
            cmd::REGION_WRITE => {
                let a: RegionAccess = fixed(command, body)?;
                let count = a.count.get();
                let rest = body
                    .get(std::mem::size_of::<RegionAccess>()..)
                    .unwrap_or_default();
                let data = rest
                    .get(..count as usize)
                    .ok_or(DecodeError::WriteDataShort {
                        count,
                        got: rest.len(),
                    })?;
                Request::RegionWrite(a, data)
            }
            cmd::REGION_READ => {
                let a: RegionAccess = fixed(command, body)?;
                if a.count.get() > MAX_DATA_XFER {
                    return Err(DecodeError::ReadTooLarge(a.count.get()));
                }
                Request::RegionRead(a)
            }
            cmd::VERSION => {
                let v: VersionBody = fixed(command, body)?;
                Request::Version {
                    major: v.major.get(),
                    minor: v.minor.get(),
                    capabilities: body
                        .get(std::mem::size_of::<VersionBody>()..)
                        .unwrap_or_default(),
                }
            }
            cmd::DEVICE_GET_INFO => Request::DeviceGetInfo,
            cmd::DEVICE_GET_REGION_INFO => {
                let r: RegionInfoRequest = fixed(command, body)?;
                Request::GetRegionInfo {
                    argsz: r.argsz.get(),
                    index: r.index.get(),
                }
            }
            cmd::GET_IRQ_INFO => {
                let r: IrqInfoRequest = fixed(command, body)?;
                Request::GetIrqInfo {
                    index: r.index.get(),
                }
            }
            cmd::SET_IRQS => {
                let s: SetIrqsBody = fixed(command, body)?;
                Request::SetIrqs {
                    flags: s.flags.get(),
                    index: s.index.get(),
                    start: s.start.get(),
                    count: s.count.get(),
                }
            }
            cmd::DMA_MAP => {
                let m: DmaMapBody = fixed(command, body)?;
                Request::DmaMap {
                    flags: m.flags.get(),
                    offset: m.offset.get(),
                    address: m.address.get(),
                    size: m.size.get(),
                }
            }
            cmd::DMA_UNMAP => Request::DmaUnmap(fixed(command, body)?),
            cmd::DEVICE_RESET => Request::DeviceReset,
            other => return Err(DecodeError::Unsupported(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_access(offset: u64, region: u32, count: u32) -> Vec<u8> {
        let mut b = offset.to_le_bytes().to_vec();
        b.extend_from_slice(&region.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b
    }

    #[test]
    fn header_size_is_bounded_before_buffering() {
        let mut h = [0u8; 16];
        h[4..8].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            Header::decode(&h),
            Err(FrameError::BadSize { size: 8, .. })
        ));
        h[4..8].copy_from_slice(&(MAX_MSG as u32 + 1).to_le_bytes());
        assert!(Header::decode(&h).is_err());
        h[4..8].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(Header::decode(&h).map(|h| h.body_len()), Ok(0));
        assert_eq!(Header::decode(&h[..15]), Err(FrameError::ShortHeader(15)));
    }

    #[test]
    fn every_truncation_of_each_fixed_body_is_rejected() {
        let bodies: [(u16, usize); 8] = [
            (cmd::VERSION, 4),
            (cmd::DMA_MAP, 32),
            (cmd::DMA_UNMAP, 24),
            (cmd::DEVICE_GET_REGION_INFO, 12),
            (cmd::GET_IRQ_INFO, 12),
            (cmd::SET_IRQS, 20),
            (cmd::REGION_READ, 16),
            (cmd::REGION_WRITE, 16),
        ];
        for (command, need) in bodies {
            let full = vec![0u8; need];
            assert!(Request::decode(command, &full).is_ok(), "command {command}");
            for len in 0..need {
                let e = Request::decode(command, &full[..len]).unwrap_err();
                assert_eq!(
                    e,
                    DecodeError::Truncated {
                        command,
                        need,
                        got: len
                    }
                );
                assert_eq!(e.errno(), libc::EINVAL);
            }
        }
    }

    #[test]
    fn a_write_must_carry_its_data_and_a_read_is_capped() {
        let mut w = region_access(0x10, 3, 4);
        assert!(matches!(
            Request::decode(cmd::REGION_WRITE, &w),
            Err(DecodeError::WriteDataShort { count: 4, got: 0 })
        ));
        w.extend_from_slice(&[1, 2, 3, 4, 5]);
        match Request::decode(cmd::REGION_WRITE, &w).unwrap() {
            Request::RegionWrite(a, data) => {
                assert_eq!((a.offset.get(), a.region.get()), (0x10, 3));
                assert_eq!(data, &[1, 2, 3, 4]);
            }
            other => panic!("{other:?}"),
        }
        let r = region_access(0, 0, MAX_DATA_XFER + 1);
        assert_eq!(
            Request::decode(cmd::REGION_READ, &r),
            Err(DecodeError::ReadTooLarge(MAX_DATA_XFER + 1))
        );
        let r = region_access(0, 0, u32::MAX);
        let w = region_access(0, 0, u32::MAX);
        assert!(Request::decode(cmd::REGION_READ, &r).is_err());
        assert!(Request::decode(cmd::REGION_WRITE, &w).is_err());
    }

    #[test]
    fn unknown_commands_are_unsupported() {
        for c in [0u16, cmd::DEVICE_GET_REGION_IO_FDS, 11, 12, 14, 0x7777] {
            let e = Request::decode(c, &[0; 64]).unwrap_err();
            assert_eq!(e, DecodeError::Unsupported(c));
            assert_eq!(e.errno(), libc::ENOTSUP);
        }
    }
}
