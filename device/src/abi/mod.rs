//! Byte layouts shared between the guest and the device (spice-protocol `qxl_dev.h`,
//! `ipc_ring.h`, `enums.h`; reference qxl-device.md). All fields little-endian, packed.
//! Only [`crate::decode`] and the device's register/ring code read these.

pub mod cmd;
pub mod dev;
