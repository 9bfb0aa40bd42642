//! `spice-bridge`: an embedded Spice server on tokio.
//!
//! Layers (each in its own module):
//! - [`wire`]: message layouts and serialisation (no I/O), with a bounded [`wire::Reader`];
//! - [`link`]: the link-stage state machine (`ExpectHeader` → `ExpectLinkMess` → `ExpectAuth` →
//!   `ExpectTicket` → [`link::Linked`]) with RSA-1024 / OAEP-SHA1 ticket auth;
//! - [`channel`]: one module per channel (main, display, cursor, inputs);
//! - [`server`]: the accept loop, sessions (one client per session) and shutdown;
//! - [`model`]: the display model the QXL device drives (surfaces, draws, cursor, monitors);
//! - [`input`]: the [`input::InputSink`] trait that receives keyboard and mouse events, and the
//!   [`input::AgentSink`] hook for VDAgent traffic.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod channel;
pub mod codec;
pub mod input;
pub mod link;
pub mod model;
pub mod server;
pub mod testing;
pub mod wire;

pub use input::{AgentSink, InputSink};
pub use model::DisplayModel;
pub use server::{Server, ServerConfig, ServerHandle};
