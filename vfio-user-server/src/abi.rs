//! vfio-user wire layouts: the message header and the fixed part of each request and reply
//! body this server reads or writes, as little-endian `#[repr(C)]` structs (zerocopy), plus the
//! command numbers and header flags. No validation here: [`crate::decode`] turns bytes into
//! typed requests.
//!
//! Source: the vfio-user protocol specification (QEMU `docs/interop/vfio-user.rst`), sections
//! "Header" and one per command; the region/IRQ payloads reuse the VFIO ioctl structs
//! (`linux/vfio.h`) with `argsz` first.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

macro_rules! wire {
    ($(#[$m:meta])* $name:ident, $size:expr, { $($(#[$fm:meta])* $f:ident: $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(C)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

wire!(
    /// Every message starts with this header (spec §"Header").
    MsgHeader, 16, {
        /// Message id; a reply carries the id of its request.
        id: U16,
        /// Command number ([`cmd`]).
        command: U16,
        /// Size of the whole message, header included.
        size: U32,
        /// [`FLAG_REPLY`], [`FLAG_NO_REPLY`], [`FLAG_ERROR`].
        flags: U32,
        /// errno of an error reply.
        error: U32,
    }
);

wire!(
    /// VFIO_USER_VERSION body, before the NUL-terminated JSON capabilities.
    VersionBody, 4, {
        /// Major version.
        major: U16,
        /// Minor version.
        minor: U16,
    }
);

wire!(
    /// VFIO_USER_REGION_READ / REGION_WRITE body, before the data (writes and read replies).
    RegionAccess, 16, {
        /// Offset in the region.
        offset: U64,
        /// Region index.
        region: U32,
        /// Bytes to read or write.
        count: U32,
    }
);

wire!(
    /// VFIO_USER_DEVICE_GET_REGION_INFO request (`struct vfio_region_info` prefix).
    RegionInfoRequest, 12, {
        /// Size of the client's buffer for the reply (capabilities need more than 32 bytes).
        argsz: U32,
        /// Unused in requests.
        flags: U32,
        /// Region index.
        index: U32,
    }
);

wire!(
    /// VFIO_USER_DEVICE_GET_REGION_INFO reply (`struct vfio_region_info`).
    RegionInfoReply, 32, {
        /// Bytes the whole info needs, capabilities included.
        argsz: U32,
        /// `VFIO_REGION_INFO_FLAG_*`.
        flags: U32,
        /// Region index.
        index: U32,
        /// Offset of the first capability from the start of this struct (0 if none).
        cap_offset: U32,
        /// Region size.
        size: U64,
        /// Offset of the region in the file descriptor sent with the reply.
        offset: U64,
    }
);

wire!(
    /// Header of the sparse-mmap capability (`struct vfio_region_info_cap_sparse_mmap`).
    SparseMmapCap, 16, {
        /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`.
        id: U16,
        /// Capability version (1).
        version: U16,
        /// Offset of the next capability (0: last).
        next: U32,
        /// Number of [`SparseMmapArea`]s that follow.
        nr_areas: U32,
        /// Reserved.
        reserved: U32,
    }
);

wire!(
    /// One mmap-able area of a region (`struct vfio_region_sparse_mmap_area`).
    SparseMmapArea, 16, {
        /// Offset in the region.
        offset: U64,
        /// Size in bytes.
        size: U64,
    }
);

wire!(
    /// VFIO_USER_DEVICE_GET_INFO reply (`struct vfio_device_info`).
    DeviceInfoReply, 16, {
        /// Size of this struct.
        argsz: U32,
        /// `VFIO_DEVICE_FLAGS_*`.
        flags: U32,
        /// Number of regions.
        num_regions: U32,
        /// Number of IRQ indices.
        num_irqs: U32,
    }
);

wire!(
    /// VFIO_USER_DEVICE_GET_IRQ_INFO reply (`struct vfio_irq_info`).
    IrqInfoReply, 16, {
        /// Size of this struct.
        argsz: U32,
        /// `VFIO_IRQ_INFO_*` (reply).
        flags: U32,
        /// IRQ index.
        index: U32,
        /// Vectors at this index (reply).
        count: U32,
    }
);

wire!(
    /// VFIO_USER_DEVICE_GET_IRQ_INFO request: the part of `struct vfio_irq_info` a client must
    /// send (the server reads only `index`).
    IrqInfoRequest, 12, {
        /// Size of the client's buffer for the reply.
        argsz: U32,
        /// Unused in requests.
        flags: U32,
        /// IRQ index.
        index: U32,
    }
);

wire!(
    /// VFIO_USER_DEVICE_SET_IRQS body (`struct vfio_irq_set` without data; eventfds travel as
    /// SCM_RIGHTS descriptors).
    SetIrqsBody, 20, {
        /// Size of the request.
        argsz: U32,
        /// `VFIO_IRQ_SET_DATA_*` | `VFIO_IRQ_SET_ACTION_*`.
        flags: U32,
        /// IRQ index.
        index: U32,
        /// First vector.
        start: U32,
        /// Number of vectors.
        count: U32,
    }
);

wire!(
    /// VFIO_USER_DMA_MAP body.
    DmaMapBody, 32, {
        /// Size of the request.
        argsz: U32,
        /// `VFIO_USER_F_DMA_REGION_*`.
        flags: U32,
        /// Offset in the file descriptor sent with the request.
        offset: U64,
        /// Guest (IOVA) address.
        address: U64,
        /// Size in bytes.
        size: U64,
    }
);

wire!(
    /// VFIO_USER_DMA_UNMAP body (echoed in the reply).
    DmaUnmapBody, 24, {
        /// Size of the request.
        argsz: U32,
        /// `VFIO_DMA_UNMAP_FLAG_*`.
        flags: U32,
        /// Guest (IOVA) address.
        address: U64,
        /// Size in bytes.
        size: U64,
    }
);

/// Length of [`MsgHeader`].
pub const HDR_LEN: usize = std::mem::size_of::<MsgHeader>();

/// Header flag: this message is a reply.
pub const FLAG_REPLY: u32 = 1;
/// Header flag: the sender wants no reply (posted write).
pub const FLAG_NO_REPLY: u32 = 1 << 4;
/// Header flag: this reply is an error; `error` holds the errno.
pub const FLAG_ERROR: u32 = 1 << 5;

/// Command numbers (spec §"Commands").
pub mod cmd {
    /// VFIO_USER_VERSION.
    pub const VERSION: u16 = 1;
    /// VFIO_USER_DMA_MAP.
    pub const DMA_MAP: u16 = 2;
    /// VFIO_USER_DMA_UNMAP.
    pub const DMA_UNMAP: u16 = 3;
    /// VFIO_USER_DEVICE_GET_INFO.
    pub const DEVICE_GET_INFO: u16 = 4;
    /// VFIO_USER_DEVICE_GET_REGION_INFO.
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    /// VFIO_USER_DEVICE_GET_REGION_IO_FDS (not supported here).
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    /// VFIO_USER_DEVICE_GET_IRQ_INFO.
    pub const GET_IRQ_INFO: u16 = 7;
    /// VFIO_USER_DEVICE_SET_IRQS.
    pub const SET_IRQS: u16 = 8;
    /// VFIO_USER_REGION_READ.
    pub const REGION_READ: u16 = 9;
    /// VFIO_USER_REGION_WRITE.
    pub const REGION_WRITE: u16 = 10;
    /// VFIO_USER_DEVICE_RESET.
    pub const DEVICE_RESET: u16 = 13;
}
