//! virtio-console (device id 3) with MULTIPORT: the VDI port that carries the Spice agent.
//!
//! [`ConsoleDevice`] implements the device side of the Linux `virtio_console` driver's
//! multiport protocol (control queues, named ports, open/close both ways); each port's owner
//! talks to it through a [`PortHandle`]. [`unix_bridge`] connects a port to a Unix socket (for
//! ports such as `org.qemu.guest_agent.0` whose host side is another program).

pub mod abi;
mod device;
pub mod unix_bridge;

pub use device::{
    ConsoleDevice, ConsoleError, ConsoleOptions, ConsoleStats, PortError, PortEvent, PortHandle,
    PortOptions, PortStats, DEFAULT_FROM_GUEST_BYTES, DEFAULT_TO_GUEST_BYTES, MAX_NAME_LEN,
    MAX_PORTS, MAX_QUEUE_SIZE,
};
