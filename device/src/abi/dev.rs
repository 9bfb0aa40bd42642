//! Device-level layouts: QXLRom, QXLModes, QXLRam, rings, QXLSurfaceCreate, I/O port and
//! interrupt numbers (reference qxl-device.md §3–§5).
//!
//! Every struct is `#[repr(C)]` over little-endian, alignment-1 field types, so it has no
//! padding and its size is the spice-protocol size; each size (and the ring offsets the
//! guest relies on) is asserted at compile time.

use core::mem::{offset_of, size_of};
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// ROM magic "QXRO" (reference §3).
pub const QXL_ROM_MAGIC: u32 = 0x4F52_5851;
/// RAM header magic "QXRA" (reference §3).
pub const QXL_RAM_MAGIC: u32 = 0x4152_5851;

/// PCI vendor id (Red Hat).
pub const QXL_VENDOR_ID: u16 = 0x1B36;
/// PCI device id (`QXL_DEVICE_ID_STABLE`).
pub const QXL_DEVICE_ID: u16 = 0x0100;
/// Subsystem vendor id (QEMU's generic default).
pub const QXL_SUBSYSTEM_VENDOR_ID: u16 = 0x1AF4;
/// Subsystem id (QEMU's generic default).
pub const QXL_SUBSYSTEM_ID: u16 = 0x1100;

/// Number of memslots (`NUM_MEMSLOTS`); valid guest slot ids are `slots_start..=slots_end`.
pub const NUM_MEMSLOTS: u8 = 8;
/// First memslot id the guest may use (ROM `slots_start`).
pub const SLOTS_START: u8 = 1;
/// Last memslot id the guest may use (ROM `slots_end`).
pub const SLOTS_END: u8 = NUM_MEMSLOTS - 1;

/// Command ring entries (`QXL_COMMAND_RING_SIZE`).
pub const COMMAND_RING_SIZE: u32 = 32;
/// Cursor ring entries (`QXL_CURSOR_RING_SIZE`).
pub const CURSOR_RING_SIZE: u32 = 32;
/// Release ring entries (`QXL_RELEASE_RING_SIZE`).
pub const RELEASE_RING_SIZE: u32 = 8;
/// Releases collected before the device publishes a chain (`QXL_FREE_BUNCH_SIZE`).
pub const FREE_BUNCH_SIZE: u32 = 32;

/// Bytes in the RAM header's log buffer.
pub const LOG_BUF_SIZE: usize = 4096;
/// Heads in the ROM's client monitors config.
pub const CLIENT_MONITORS_CONFIG_MAX_HEADS: usize = 64;
/// Bytes of the ROM's client capability bitmap.
pub const CLIENT_CAPABILITIES_BYTES: usize = 58;
/// Space reserved for the RAM header at the end of BAR0 (ALIGN(5348, 4096); Linux maps 5412).
pub const RAM_HEADER_RESERVED: u32 = 8192;
/// QXL page size.
pub const QXL_PAGE_SIZE: u32 = 4096;

/// `QXL_SURF_FLAG_KEEP_DATA`.
pub const QXL_SURF_FLAG_KEEP_DATA: u32 = 1;
/// `QXL_SURF_TYPE_PRIMARY`.
pub const QXL_SURF_TYPE_PRIMARY: u32 = 0;

/// Interrupt bits in `int_pending` / `int_mask` (reference §5).
pub mod irq {
    /// Command ring consumer notify, release ring producer notify.
    pub const DISPLAY: u32 = 1 << 0;
    /// Cursor ring consumer notify.
    pub const CURSOR: u32 = 1 << 1;
    /// An async I/O completed.
    pub const IO_CMD: u32 = 1 << 2;
    /// The device detected a guest bug.
    pub const ERROR: u32 = 1 << 3;
    /// Client presence / capabilities changed.
    pub const CLIENT: u32 = 1 << 4;
    /// The ROM's client monitors config changed.
    pub const CLIENT_MONITORS_CONFIG: u32 = 1 << 5;
}

/// I/O port numbers, offsets into BAR3 (reference §5).
pub mod io {
    /// Wake the command-ring consumer.
    pub const NOTIFY_CMD: u8 = 0;
    /// Wake the cursor-ring consumer.
    pub const NOTIFY_CURSOR: u8 = 1;
    /// Synchronous update of `ram.update_area` of `ram.update_surface`.
    pub const UPDATE_AREA: u8 = 2;
    /// Re-evaluate the interrupt line.
    pub const UPDATE_IRQ: u8 = 3;
    /// Guest is out of memory: push every release possible.
    pub const NOTIFY_OOM: u8 = 4;
    /// Hard reset.
    pub const RESET: u8 = 5;
    /// qxl-1 compat mode set (value = mode id).
    pub const SET_MODE: u8 = 6;
    /// Print `ram.log_buf`.
    pub const LOG: u8 = 7;
    /// Add memslot (value = slot id) from `ram.mem_slot`.
    pub const MEMSLOT_ADD: u8 = 8;
    /// Delete memslot (value = slot id).
    pub const MEMSLOT_DEL: u8 = 9;
    /// Defined, never implemented.
    pub const DETACH_PRIMARY: u8 = 10;
    /// Defined, never implemented.
    pub const ATTACH_PRIMARY: u8 = 11;
    /// Create the primary surface from `ram.create_surface`.
    pub const CREATE_PRIMARY: u8 = 12;
    /// Destroy the primary surface.
    pub const DESTROY_PRIMARY: u8 = 13;
    /// Destroy surface (value = surface id).
    pub const DESTROY_SURFACE_WAIT: u8 = 14;
    /// Destroy all surfaces.
    pub const DESTROY_ALL_SURFACES: u8 = 15;
    /// Async UPDATE_AREA.
    pub const UPDATE_AREA_ASYNC: u8 = 16;
    /// Async MEMSLOT_ADD.
    pub const MEMSLOT_ADD_ASYNC: u8 = 17;
    /// Async CREATE_PRIMARY.
    pub const CREATE_PRIMARY_ASYNC: u8 = 18;
    /// Async DESTROY_PRIMARY.
    pub const DESTROY_PRIMARY_ASYNC: u8 = 19;
    /// Async DESTROY_SURFACE_WAIT.
    pub const DESTROY_SURFACE_ASYNC: u8 = 20;
    /// Async DESTROY_ALL_SURFACES.
    pub const DESTROY_ALL_SURFACES_ASYNC: u8 = 21;
    /// Render every pending command of every surface (async).
    pub const FLUSH_SURFACES_ASYNC: u8 = 22;
    /// Publish the release chain being built now.
    pub const FLUSH_RELEASE: u8 = 23;
    /// Hand `ram.monitors_config` to the device (async, revision ≥ 4).
    pub const MONITORS_CONFIG_ASYNC: u8 = 24;
    /// Number of defined ports.
    pub const RANGE_SIZE: u8 = 25;
    /// Size of the I/O BAR for revisions 3..5.
    pub const BAR_SIZE: u32 = 32;
}

/// `QXLRect`: top, left, bottom, right (i32 each).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct QxlRect {
    /// Top edge.
    pub top: I32,
    /// Left edge.
    pub left: I32,
    /// Bottom edge (exclusive).
    pub bottom: I32,
    /// Right edge (exclusive).
    pub right: I32,
}

/// `QXLURect`: top, left, bottom, right (u32 each).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct QxlURect {
    /// Top edge.
    pub top: U32,
    /// Left edge.
    pub left: U32,
    /// Bottom edge (exclusive).
    pub bottom: U32,
    /// Right edge (exclusive).
    pub right: U32,
}

/// `QXLClientMonitorsConfig` as stored in the ROM (count, padding, 64 heads).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QxlClientMonitorsConfig {
    /// Number of valid heads.
    pub count: U16,
    /// Padding (zero).
    pub padding: U16,
    /// Head rectangles (left = x, top = y, right = x + w, bottom = y + h).
    pub heads: [QxlURect; CLIENT_MONITORS_CONFIG_MAX_HEADS],
}

/// `QXLRom` (1160 bytes), at offset 0 of BAR2.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QxlRom {
    /// [`QXL_ROM_MAGIC`].
    pub magic: U32,
    /// Device / console index.
    pub id: U32,
    /// Update id (0).
    pub update_id: U32,
    /// Compression level (set by the host).
    pub compression_level: U32,
    /// Guest debug level.
    pub log_level: U32,
    /// qxl-1 compat: last SET_MODE id.
    pub mode: U32,
    /// Offset of the modes table in the ROM (= 1160).
    pub modes_offset: U32,
    /// Pages of guest-managed memory in BAR0.
    pub num_pages: U32,
    /// Offset of those pages in BAR0 (= surface0_area_size).
    pub pages_offset: U32,
    /// Offset of the draw area (surface 0) in BAR0 (0).
    pub draw_area_offset: U32,
    /// Bytes reserved for surface 0 (vgamem).
    pub surface0_area_size: U32,
    /// Offset of the RAM header in BAR0 (BAR0 size − 8192).
    pub ram_header_offset: U32,
    /// Multimedia clock (never updated).
    pub mm_clock: U32,
    /// Number of surfaces.
    pub n_surfaces: U32,
    /// Flags (0).
    pub flags: U64,
    /// First guest memslot id (1).
    pub slots_start: u8,
    /// Last guest memslot id (7).
    pub slots_end: u8,
    /// Generation bits in a QXLPHYSICAL (8).
    pub slot_gen_bits: u8,
    /// Slot id bits in a QXLPHYSICAL (8).
    pub slot_id_bits: u8,
    /// Current memslot generation (0).
    pub slot_generation: u8,
    /// A Spice client is connected (revision ≥ 4).
    pub client_present: u8,
    /// Client display-channel capability bits.
    pub client_capabilities: [u8; CLIENT_CAPABILITIES_BYTES],
    /// CRC-32 of `client_monitors_config`.
    pub client_monitors_config_crc: U32,
    /// Client monitors config.
    pub client_monitors_config: QxlClientMonitorsConfig,
}

/// `QXLMode` (32 bytes), an entry of the ROM modes table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct QxlMode {
    /// Index in the full static mode list.
    pub id: U32,
    /// Width in pixels.
    pub x_res: U32,
    /// Height in pixels.
    pub y_res: U32,
    /// Bits per pixel (16 or 32).
    pub bits: U32,
    /// Bytes per row.
    pub stride: U32,
    /// Width in millimetres.
    pub x_mili: U32,
    /// Height in millimetres.
    pub y_mili: U32,
    /// Orientation (0 or 1).
    pub orientation: U32,
}

/// Ring header (`SPICE_RING_DECLARE`): 5 × u32.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RingHeader {
    /// Entries (guest-visible; never trusted by the device).
    pub num_items: U32,
    /// Producer index (free-running).
    pub prod: U32,
    /// Producer notifies when `prod` becomes this value.
    pub notify_on_prod: U32,
    /// Consumer index (free-running).
    pub cons: U32,
    /// Consumer notifies when `cons` becomes this value.
    pub notify_on_cons: U32,
}

/// A command/cursor ring entry (`QXLCommand`, 16 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RingCommand {
    /// QXLPHYSICAL of the command struct.
    pub data: U64,
    /// `QXL_CMD_*`.
    pub ty: U32,
    /// Padding.
    pub padding: U32,
}

/// `QXLCommandRing` / `QXLCursorRing`: header + 32 entries.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CommandRing {
    /// Ring header.
    pub header: RingHeader,
    /// Entries.
    pub items: [RingCommand; COMMAND_RING_SIZE as usize],
}

/// `QXLReleaseRing`: header + 8 u64 ids.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ReleaseRing {
    /// Ring header.
    pub header: RingHeader,
    /// Chain heads (release ids; 0 = none).
    pub items: [U64; RELEASE_RING_SIZE as usize],
}

/// `QXLMemSlot`: guest-physical range, end exclusive.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct QxlMemSlot {
    /// First guest-physical byte.
    pub mem_start: U64,
    /// One past the last byte.
    pub mem_end: U64,
}

/// `QXLSurfaceCreate` (40 bytes), used by CREATE_PRIMARY.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct QxlSurfaceCreate {
    /// Width in pixels.
    pub width: U32,
    /// Height in pixels.
    pub height: U32,
    /// Bytes per row; negative = bottom-up.
    pub stride: I32,
    /// `SPICE_SURFACE_FMT_*`.
    pub format: U32,
    /// Position (unused).
    pub position: U32,
    /// Mouse mode (unused).
    pub mouse_mode: U32,
    /// `QXL_SURF_FLAG_*`.
    pub flags: U32,
    /// `QXL_SURF_TYPE_*`.
    pub ty: U32,
    /// QXLPHYSICAL of the pixels.
    pub mem: U64,
}

/// `QXLRam` (5348 bytes), at `ram_header_offset` in BAR0.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QxlRam {
    /// [`QXL_RAM_MAGIC`].
    pub magic: U32,
    /// Pending interrupt bits (device ORs, guest clears).
    pub int_pending: U32,
    /// Interrupt mask (guest-written).
    pub int_mask: U32,
    /// Text for QXL_IO_LOG (not necessarily NUL-terminated).
    pub log_buf: [u8; LOG_BUF_SIZE],
    /// Command ring.
    pub cmd_ring: CommandRing,
    /// Cursor ring.
    pub cursor_ring: CommandRing,
    /// Release ring.
    pub release_ring: ReleaseRing,
    /// Area for UPDATE_AREA(_ASYNC).
    pub update_area: QxlRect,
    /// Surface for UPDATE_AREA(_ASYNC).
    pub update_surface: U32,
    /// Range for MEMSLOT_ADD(_ASYNC).
    pub mem_slot: QxlMemSlot,
    /// Parameters for CREATE_PRIMARY(_ASYNC).
    pub create_surface: QxlSurfaceCreate,
    /// Flags (unused).
    pub flags: U64,
    /// QXLPHYSICAL of the guest's QXLMonitorsConfig.
    pub monitors_config: U64,
}

/// Byte offsets inside [`QxlRam`] used by the device's register and ring code.
pub mod ram_off {
    use super::*;
    /// `int_pending`.
    pub const INT_PENDING: usize = offset_of!(QxlRam, int_pending);
    /// `int_mask`.
    pub const INT_MASK: usize = offset_of!(QxlRam, int_mask);
    /// `log_buf`.
    pub const LOG_BUF: usize = offset_of!(QxlRam, log_buf);
    /// `cmd_ring`.
    pub const CMD_RING: usize = offset_of!(QxlRam, cmd_ring);
    /// `cursor_ring`.
    pub const CURSOR_RING: usize = offset_of!(QxlRam, cursor_ring);
    /// `release_ring`.
    pub const RELEASE_RING: usize = offset_of!(QxlRam, release_ring);
    /// `update_area`.
    pub const UPDATE_AREA: usize = offset_of!(QxlRam, update_area);
    /// `update_surface`.
    pub const UPDATE_SURFACE: usize = offset_of!(QxlRam, update_surface);
    /// `mem_slot`.
    pub const MEM_SLOT: usize = offset_of!(QxlRam, mem_slot);
    /// `create_surface`.
    pub const CREATE_SURFACE: usize = offset_of!(QxlRam, create_surface);
    /// `monitors_config`.
    pub const MONITORS_CONFIG: usize = offset_of!(QxlRam, monitors_config);
    /// Ring header field offsets (relative to a ring).
    pub const RING_NUM_ITEMS: usize = offset_of!(RingHeader, num_items);
    /// `prod` relative to a ring.
    pub const RING_PROD: usize = offset_of!(RingHeader, prod);
    /// `notify_on_prod` relative to a ring.
    pub const RING_NOTIFY_ON_PROD: usize = offset_of!(RingHeader, notify_on_prod);
    /// `cons` relative to a ring.
    pub const RING_CONS: usize = offset_of!(RingHeader, cons);
    /// `notify_on_cons` relative to a ring.
    pub const RING_NOTIFY_ON_CONS: usize = offset_of!(RingHeader, notify_on_cons);
    /// First entry relative to a ring.
    pub const RING_ITEMS: usize = size_of::<RingHeader>();
}

/// Byte offsets inside [`QxlRom`].
pub mod rom_off {
    use super::*;
    /// `update_id`.
    pub const UPDATE_ID: usize = offset_of!(QxlRom, update_id);
    /// `compression_level`.
    pub const COMPRESSION_LEVEL: usize = offset_of!(QxlRom, compression_level);
    /// `mode`.
    pub const MODE: usize = offset_of!(QxlRom, mode);
    /// `ram_header_offset`.
    pub const RAM_HEADER_OFFSET: usize = offset_of!(QxlRom, ram_header_offset);
    /// `slot_generation`.
    pub const SLOT_GENERATION: usize = offset_of!(QxlRom, slot_generation);
    /// `client_present`.
    pub const CLIENT_PRESENT: usize = offset_of!(QxlRom, client_present);
    /// `client_capabilities`.
    pub const CLIENT_CAPABILITIES: usize = offset_of!(QxlRom, client_capabilities);
    /// `client_monitors_config_crc`.
    pub const CLIENT_MONITORS_CONFIG_CRC: usize = offset_of!(QxlRom, client_monitors_config_crc);
    /// `client_monitors_config`.
    pub const CLIENT_MONITORS_CONFIG: usize = offset_of!(QxlRom, client_monitors_config);
}

// Compile-time layout checks against spice-protocol (reference §3, §4).
const _: () = {
    assert!(size_of::<QxlRect>() == 16);
    assert!(size_of::<QxlURect>() == 16);
    assert!(size_of::<QxlClientMonitorsConfig>() == 1028);
    assert!(size_of::<QxlRom>() == 1160);
    assert!(offset_of!(QxlRom, ram_header_offset) == 44);
    assert!(offset_of!(QxlRom, n_surfaces) == 52);
    assert!(offset_of!(QxlRom, slots_start) == 64);
    assert!(offset_of!(QxlRom, client_present) == 69);
    assert!(offset_of!(QxlRom, client_monitors_config_crc) == 128);
    assert!(offset_of!(QxlRom, client_monitors_config) == 132);
    assert!(size_of::<QxlMode>() == 32);
    assert!(size_of::<RingHeader>() == 20);
    assert!(size_of::<RingCommand>() == 16);
    assert!(size_of::<CommandRing>() == 532);
    assert!(size_of::<ReleaseRing>() == 84);
    assert!(size_of::<QxlMemSlot>() == 16);
    assert!(size_of::<QxlSurfaceCreate>() == 40);
    assert!(size_of::<QxlRam>() == 5348);
    assert!(offset_of!(QxlRam, log_buf) == 12);
    assert!(offset_of!(QxlRam, cmd_ring) == 4108);
    assert!(offset_of!(QxlRam, cursor_ring) == 4640);
    assert!(offset_of!(QxlRam, release_ring) == 5172);
    assert!(offset_of!(QxlRam, update_area) == 5256);
    assert!(offset_of!(QxlRam, update_surface) == 5272);
    assert!(offset_of!(QxlRam, mem_slot) == 5276);
    assert!(offset_of!(QxlRam, create_surface) == 5292);
    assert!(offset_of!(QxlRam, flags) == 5332);
    assert!(offset_of!(QxlRam, monitors_config) == 5340);
    // The RAM header must fit the space reserved for it, with room for Linux's 64-byte tail.
    assert!(size_of::<QxlRam>() + 64 <= RAM_HEADER_RESERVED as usize);
};
