//! The agent channel: the VDAgent byte stream between the Spice client, the server and the guest
//! agent behind the VDI port.
//!
//! * [`wire`]: chunk and message framing, parsed incrementally and bounded (no I/O);
//! * [`AgentBridge`]: the server side as spice-server runs it (relay with token flow control,
//!   AGENT_CONNECTED / DISCONNECTED, MONITORS_CONFIG to the display device, capabilities,
//!   MOUSE_STATE for client mouse mode), on a `vdi_port::console::PortHandle`;
//! * [`AgentMouseInput`]: sends client-mode pointer events to the agent while it can take them.

mod bridge;
pub mod wire;

pub use bridge::{
    AgentBridge, AgentMouseInput, AgentOptions, AgentStats, MonitorsSink, DEFAULT_MAX_MESSAGE,
};
