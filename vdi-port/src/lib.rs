//! virtio device models for spice-rs remote displays, and a vhost-user backend layer.
//!
//! * [`input`]: virtio-input (device id 18) keyboard, absolute tablet and relative mouse. The
//!   Spice server pushes whole reports through a cloneable, non-blocking [`input::InputHandle`];
//!   the device delivers each report into the guest's eventq all-or-nothing and reports the
//!   guest's LED changes back through a [`input::StatusSink`].
//! * [`console`]: virtio-console (device id 3) with MULTIPORT, the VDI port: named ports such
//!   as `com.redhat.spice.0` (the Spice agent), guest open/close and data as ordered events
//!   through a [`console::PortHandle`], and a Unix-socket bridge for further ports.
//! * [`vhost_user`]: runs any [`VirtioDevice`] as a vhost-user backend over a Unix socket
//!   (QEMU `vhost-user-input-pci`, cloud-hypervisor `--generic-vhost-user`, crosvm
//!   `--vhost-user`), serving one frontend at a time and resetting the device between them.
//!
//! A VMM that links the crate can also drive a device in process: it hands the device its own
//! `virtio_queue::Queue` and guest memory through the [`VirtioDevice`] trait (see the example
//! on [`input::InputDevice`]).
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod console;
mod device;
pub mod input;
pub mod vhost_user;

#[cfg(feature = "test-utils")]
pub mod fuzzing;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use device::{
    DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
