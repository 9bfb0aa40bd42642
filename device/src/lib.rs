//! `qxl-device`: the QXL revision-5 PCI display device for Rust VMMs.
//!
//! Layers (../shared/design.md, ../shared/style.md):
//! - [`abi`]: byte layouts of everything the guest shares with the device;
//! - [`mem`]: the one bounded accessor for guest memory ([`mem::GuestMemory`]);
//! - [`decode`]: guest commands → validated Rust values;
//! - [`render`]: the software renderer behind UPDATE_AREA and snapshots;
//! - the device itself (PCI config, BARs, ROM/RAM, I/O ports, rings, IRQ).
#![deny(missing_docs)]

pub mod abi;
pub mod decode;
pub mod mem;
pub mod render;
