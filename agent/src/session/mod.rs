//! The per-session agent (`spice-agent`): runs as the user in a graphical session, connects to
//! `spice-agentd`, and serves what needs the session: the clipboard ([`clipboard`]), the
//! resolution ([`randr`]) and file transfer ([`file_xfer`]).

pub mod clipboard;
pub mod file_xfer;

use crate::protocol::Message;

/// Where the session part's messages to the client go (through `spice-agentd`). The sink
/// encodes in the client's dialect; callers fill in every field (a grab's serial included).
pub trait HostSink: Send + Sync {
    /// Sends one message to the client.
    fn send(&self, msg: Message);
}
