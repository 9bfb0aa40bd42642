//! `spice-bridge`: an embedded Spice server on tokio.
//!
//! Layers (each in its own module):
//! - [`wire`]: message layouts and serialisation (no I/O), with a bounded [`wire::Reader`];
//! - [`link`]: the link-stage state machine (`ExpectHeader` → `ExpectLinkMess` → `ExpectAuth` →
//!   `ExpectTicket` → [`link::Linked`]) with RSA-1024 / OAEP-SHA1 ticket auth;
//! - [`channel`]: one module per channel (main, display, cursor, inputs);
//! - [`session`]: the configuration, counters and per-session state that [`server`] and the
//!   channels share (below both, so neither imports the other);
//! - [`server`]: the accept loop, sessions (one client per session) and shutdown; connections
//!   still in the link stage are kept in a bounded pool apart from linked channels, under a
//!   link deadline ([`session::ConnectionLimits`]), so an idle or slow flood cannot lock
//!   clients out;
//! - [`tls`]: the TLS port's certificates (QEMU's `x509-dir`) and the per-channel TLS/plain
//!   policy; `transport` sets up each connection's stream (TLS, WebSocket) before the link;
//! - [`motion`]: motion before pixels: a new picture split into a vertical move (COPY_BITS)
//!   and the rows that really changed;
//! - [`model`]: the display model the QXL device drives (surfaces, draws, cursor, monitors);
//! - [`guest_input`]: Spice input turned into Linux input events for the guest's keyboard,
//!   tablet and mouse devices (behind [`guest_input::EvdevDevice`]);
//! - [`input`]: the [`input::InputSink`] trait that receives keyboard and mouse events, and the
//!   [`input::AgentSink`] hook for VDAgent traffic;
//! - [`agent`]: the agent channel between the client and the guest agent behind the VDI port
//!   (relay with flow control, connect/disconnect, monitors config, client mouse via the agent);
//! - [`qxl_display`]: the bridge from a QXL device (`qxl-device`) to the [`model`];
//! - [`qxl_vfio`]: the QXL device as a vfio-user PCI function (`vfio-user-server`), for serving it
//!   to an unmodified VMM.
//!
//! Test tools (`testing`: a scripted client, scenes, Xvfb; `fuzzing`: the fuzz target bodies;
//! `codec::testimg`) are behind the `test-utils` feature.
//!
//! # Serving a picture
//!
//! ```no_run
//! use std::sync::Arc;
//! use spice_bridge::input::{NullAgent, NullInput};
//! use spice_bridge::model::{Image, Rect, SurfaceFormat};
//! use spice_bridge::{DisplayModel, Server, ServerConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let model = DisplayModel::new();
//! model.create_surface(0, 640, 480, SurfaceFormat::Xrgb32)?;
//! model.fill(0, Rect::new(0, 0, 640, 480), 0x00_20_40_80, &[])?;
//! let img = Image::new(0, 2, 1, vec![0x00ff_0000, 0x0000_ff00])?;
//! model.draw_copy(0, Rect::new(10, 10, 2, 1), &img, &[])?;
//! model.mark();
//! let server = Server::start(
//!     ServerConfig::default(),
//!     model.clone(),
//!     Arc::new(NullInput),
//!     Arc::new(NullAgent),
//! )
//! .await?;
//! // ... the QXL device keeps calling `model` methods from its worker thread ...
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod admission;
pub mod agent;
pub mod channel;
pub mod codec;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
pub mod guest_input;
pub mod input;
pub mod link;
pub mod model;
pub mod motion;
pub mod qxl_display;
pub mod qxl_vfio;
pub mod server;
pub mod session;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod tls;
mod transport;
mod websocket;
pub mod wire;

pub use input::{AgentSink, InputSink};
pub use model::DisplayModel;
pub use server::{Server, ServerConfig, ServerHandle};
