//! `qxl-device`: the QXL revision-5 PCI display device for Rust VMMs.
//!
//! Layers (../shared/design.md, ../shared/style.md):
//! - [`abi`]: byte layouts of everything the guest shares with the device;
//! - [`mem`]: the one bounded accessor for guest memory ([`mem::GuestMemory`]);
//! - [`decode`]: guest commands → validated Rust values;
//! - [`render`]: the software renderer behind UPDATE_AREA and snapshots;
//! - the device itself: [`pci`] (config space), [`region`] (memfd BAR backing), [`rom`]
//!   (QXLRom, modes, client monitors config), [`memslot`], [`ring`], [`vbe`] (Bochs VBE
//!   fallback) and [`QxlDevice`] tying them together; [`worker`] is an optional worker
//!   thread for in-process VMMs.
//!
//! # Using the device from a VMM
//!
//! ```
//! use qxl_device::{QxlConfig, QxlDevice, NoInterrupt, DeviceEvent, BarIndex};
//! use std::sync::{Arc, Mutex};
//!
//! let events: Arc<Mutex<Vec<DeviceEvent>>> = Arc::default();
//! let mut dev = QxlDevice::new(QxlConfig::default(), Arc::new(NoInterrupt), Box::new(events.clone()))?;
//! // Map BAR0/BAR1 from their memfds (dev.bar_regions()), trap BAR2/BAR3:
//! let mut magic = [0u8; 4];
//! dev.bar_read(BarIndex::Rom, 0, &mut magic);
//! assert_eq!(&magic, b"QXRO");
//! // vCPU thread: an I/O port write; wake the worker if asked to.
//! let action = dev.io_write(qxl_device::abi::dev::io::NOTIFY_CMD, 0);
//! // Worker thread:
//! if action.wake_worker {
//!     while dev.process().more {}
//! }
//! # Ok::<(), qxl_device::DeviceError>(())
//! ```
//!
//! # Threads
//!
//! [`QxlDevice`] is a plain state machine (`&mut self`); keep it behind a mutex. vCPU
//! threads call [`QxlDevice::io_write`] / [`QxlDevice::bar_write`] /
//! [`QxlDevice::config_write`], which only touch registers and return
//! [`IoAction::wake_worker`]; one worker thread per device calls [`QxlDevice::process`]
//! until [`Progress::more`] is false. Ring decoding and rendering happen on the worker,
//! except for the synchronous I/Os QEMU also runs on the vCPU (UPDATE_AREA, CREATE_PRIMARY,
//! DESTROY_*, MEMSLOT_ADD).
//!
//! # What the VMM receives
//!
//! - [`InterruptLine::set_level`] on every re-evaluation of `(int_pending & int_mask) != 0`;
//! - [`DeviceEvent`]s through a [`DisplaySink`]: decoded display and cursor commands (after
//!   the software renderer applied them), primary/surface create and destroy, monitors
//!   config, mode and VBE changes, guest log lines, resets and [`GuestBug`]s;
//! - [`BarMapping`] changes from config-space writes.
//!
//! # Guest bugs
//!
//! A guest bug (bad I/O argument, second async I/O, unknown port, garbage ring indices, ...)
//! raises `QXL_INTERRUPT_ERROR`, is logged, counted in [`Metrics::guest_bugs`] and reported
//! as [`DeviceEvent::GuestBug`]. By default the offending operation is rejected and the
//! device keeps serving (an async I/O still gets its one IO_CMD, a ring with garbage indices
//! is parked until reset), so a Linux guest — which never resets after an error — does not
//! freeze. [`QxlConfig::halt_on_guest_bug`] selects QEMU's behaviour instead: every I/O but
//! RESET is ignored and the rings are not consumed until RESET.
#![deny(missing_docs)]

pub mod abi;
pub mod config;
pub mod decode;
mod device;
pub mod mem;
pub mod memslot;
pub mod metrics;
pub mod pci;
pub mod region;
pub mod render;
pub mod ring;
pub mod rom;
pub mod sink;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod vbe;
pub mod worker;

pub use config::{ConfigError, Layout, QxlConfig};
pub use device::{BarRegion, DeviceError, IoAction, Progress, QxlDevice};
pub use metrics::Metrics;
pub use pci::{BarIndex, BarInfo, BarMapping};
pub use rom::ClientMonitor;
pub use sink::{DeviceEvent, DisplaySink, GuestBug, InterruptLine, Mode, NoInterrupt, NullSink};
pub use worker::{Worker, WorkerConfig, WorkerHandle};
