//! spice-agent: the Spice guest agent for Linux guests (`../shared/design.md`, `agent/`).
//!
//! Two processes, as the system needs them (`../shared/reference/agent-and-vdiport.md` §4):
//!
//! - `spice-agentd` (system service, root): owns the VDI port
//!   (`/dev/virtio-ports/com.redhat.spice.0`) and `/dev/uinput`; speaks the vdagent protocol
//!   ([`protocol`]) with the host, injects the client's pointer ([`uinput`]), and relays the
//!   rest to the session agent of the active session over a Unix socket ([`ipc`]).
//! - `spice-agent` (per graphical session, the user): clipboard and resolution on X11
//!   ([`session`]), file transfer into the user's download folder ([`session::file_xfer`]).
#![deny(missing_docs)]

pub mod daemon;
#[cfg(feature = "test-utils")]
pub mod fuzzing;
pub mod ipc;
pub mod port;
pub mod protocol;
pub mod seat;
pub mod session;
pub mod uinput;

/// Logs to stderr (the journal under systemd), `RUST_LOG` overriding the level.
pub fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
