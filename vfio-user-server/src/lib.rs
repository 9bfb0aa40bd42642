//! `vfio-user-server`: serves one emulated PCI function to a VMM over vfio-user (QEMU >= 10.1
//! `-device vfio-user-pci`, cloud-hypervisor `--user-device`), one VMM connection at a time.
//!
//! Layers, each in its own module:
//! - [`abi`]: message layouts (`#[repr(C)]` little-endian header and bodies), command numbers;
//! - [`decode`]: validated decoding of a header ([`decode::Header`], size bounded before
//!   buffering) and of each request body into a typed [`decode::Request`];
//! - [`function`]: the device side: the [`PciFunction`] trait, [`BarBacking`], INTx through the
//!   VMM's eventfd with MASK/UNMASK ([`Intx`]), the announced tables ([`server_tables`]) and the
//!   `vfio_user::ServerBackend` routing requests to them ([`FunctionBackend`]);
//! - [`server`]: the loop ([`Server`]): bulk socket reads so posted writes cost no syscall,
//!   descriptors attributed to the message whose `sendmsg` carried them, error replies to bad
//!   requests, the connection dropped only when a message cannot be framed.
//!
//! # Serving a function
//!
//! ```no_run
//! use std::sync::Arc;
//! use vfio_user_server::{server_tables, FunctionBackend, Intx, PciFunction, Server};
//! # fn demo<F: PciFunction + Clone>(func: F) -> std::io::Result<()> {
//! let intx = Arc::new(Intx::default()); // the device raises its line through this
//! let (regions, irqs) = server_tables(&func.bars(), true);
//! let server = Server::new(std::path::Path::new("/run/dev.sock"), irqs, regions)?;
//! loop {
//!     let mut backend = FunctionBackend::new(func.clone(), intx.clone());
//!     let _ = server.run(&mut backend); // one VMM; then reset and accept the next
//!     intx.set_level(false);
//!     backend.function().reset();
//! }
//! # }
//! ```
#![deny(missing_docs)]

pub mod abi;
pub mod decode;
pub mod function;
pub mod server;
mod sock;

#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

pub use decode::{DecodeError, FrameError, Header, Request, MAX_DATA_XFER, MAX_MSG};
pub use function::{server_tables, BarBacking, FunctionBackend, Intx, PciFunction};
pub use server::{ConnStats, Server, Tables};
