//! What the server hands to the VMM: keyboard and mouse events ([`InputSink`]) and VDAgent
//! stream bytes from the client ([`AgentSink`]).

/// Lock-key bits as Spice sends them (SCROLL_LOCK 1, NUM_LOCK 2, CAPS_LOCK 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockKeys(pub u16);

/// A key press or release as a PC/XT set-1 scancode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    /// Set-1 make code without the release bit: `0x1e` for 'A', `0xe01d` for right Ctrl
    /// (0xE0-prefixed keys carry the prefix in the high byte), `0xe11d` for Pause.
    pub scancode: u16,
    /// true = press, false = release
    pub pressed: bool,
}

/// Mouse buttons (Spice button numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseButton {
    /// 1
    Left,
    /// 2
    Middle,
    /// 3
    Right,
    /// 4: wheel up
    WheelUp,
    /// 5: wheel down
    WheelDown,
    /// 6
    Side,
    /// 7
    Extra,
}

impl MouseButton {
    /// From the Spice button number.
    pub fn from_wire(b: u8) -> Option<MouseButton> {
        Some(match b {
            1 => MouseButton::Left,
            2 => MouseButton::Middle,
            3 => MouseButton::Right,
            4 => MouseButton::WheelUp,
            5 => MouseButton::WheelDown,
            6 => MouseButton::Side,
            7 => MouseButton::Extra,
            _ => return None,
        })
    }
}

/// Button-state mask after an event (LEFT 1, MIDDLE 2, RIGHT 4, UP 8, DOWN 16, SIDE 32, EXTRA 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buttons(pub u16);

/// Mouse mode negotiated on the main channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseMode {
    /// relative motion (MOUSE_MOTION)
    Server,
    /// absolute positions (MOUSE_POSITION)
    Client,
}

/// Receives input events from the Spice inputs channel. Called on the server's tokio tasks:
/// implementations must not block (queue the event and return).
pub trait InputSink: Send + Sync {
    /// A key went down or up.
    fn key(&self, event: KeyEvent);
    /// The client's lock-key state (the guest should toggle its locks to match).
    fn lock_keys(&self, keys: LockKeys) {
        let _ = keys;
    }
    /// Relative mouse motion (server mouse mode).
    fn mouse_motion(&self, dx: i32, dy: i32, buttons: Buttons);
    /// Absolute position on display `display` (client mouse mode).
    fn mouse_position(&self, x: u32, y: u32, display: u8, buttons: Buttons);
    /// A button (or wheel step) went down or up; `buttons` is the state afterwards.
    fn mouse_button(&self, button: MouseButton, pressed: bool, buttons: Buttons);
    /// The mouse mode changed.
    fn mouse_mode(&self, mode: MouseMode) {
        let _ = mode;
    }
}

/// An [`InputSink`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullInput;

impl InputSink for NullInput {
    fn key(&self, _: KeyEvent) {}
    fn mouse_motion(&self, _: i32, _: i32, _: Buttons) {}
    fn mouse_position(&self, _: u32, _: u32, _: u8, _: Buttons) {}
    fn mouse_button(&self, _: MouseButton, _: bool, _: Buttons) {}
}

/// Why an [`AgentSink`] refused client agent data. The server drops the client connection
/// (as spice-server does for malformed agent data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentDataError {
    /// The VDAgent message stream from the client is malformed.
    #[error("malformed agent stream: {0}")]
    Malformed(String),
    /// The client sent more than its flow-control window allows.
    #[error("agent data beyond the flow-control window")]
    Overflow,
}

/// Receives VDAgent stream bytes from the client (AGENT_DATA) and the agent session events.
/// Must not block.
///
/// Flow control: each AGENT_DATA comes with its [`AgentDataToken`]; dropping the token gives
/// the client its credit back (MAIN_AGENT_TOKEN). A sink that forwards the data to a guest
/// keeps the token until the bytes are on their way, so a client can never have more than
/// the agent window (10 messages) in flight.
pub trait AgentSink: Send + Sync {
    /// A client started talking to the agent (AGENT_START; again after each agent (re)connect).
    fn client_started(&self) {}
    /// One AGENT_DATA message (at most 2048 bytes of the VDAgent byte stream) and its token.
    fn client_data(&self, data: &[u8], token: AgentDataToken) -> Result<(), AgentDataError>;
    /// The client went away.
    fn client_gone(&self) {}
}

pub use crate::session::AgentDataToken;

/// An [`AgentSink`] that drops everything (returning each token at once).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullAgent;

impl AgentSink for NullAgent {
    fn client_data(&self, _: &[u8], _: AgentDataToken) -> Result<(), AgentDataError> {
        Ok(())
    }
}

/// Splits a set-1 scancode byte sequence into key events (0xE0 prefixes one key; 0xE1
/// prefixes a two-byte key, as Pause sends). Stray trailing prefixes are dropped.
pub fn decode_scancodes(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => {}
            0xe0 => {
                if let Some(&sc) = bytes.get(i + 1) {
                    out.push(KeyEvent {
                        scancode: 0xe000 | u16::from(sc & 0x7f),
                        pressed: sc & 0x80 == 0,
                    });
                }
                i += 1;
            }
            0xe1 => {
                if let (Some(&a), Some(_)) = (bytes.get(i + 1), bytes.get(i + 2)) {
                    out.push(KeyEvent {
                        scancode: 0xe100 | u16::from(a & 0x7f),
                        pressed: a & 0x80 == 0,
                    });
                }
                i += 2;
            }
            sc => out.push(KeyEvent {
                scancode: u16::from(sc & 0x7f),
                pressed: sc & 0x80 == 0,
            }),
        }
        i += 1;
    }
    out
}

/// The scancode bytes packed in a KEY_DOWN/KEY_UP code: LSB first, up to the first zero byte.
pub fn code_bytes(code: u32) -> Vec<u8> {
    code.to_le_bytes()
        .into_iter()
        .take_while(|&b| b != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_extended_codes() {
        assert_eq!(
            decode_scancodes(&code_bytes(0x1e)),
            vec![KeyEvent {
                scancode: 0x1e,
                pressed: true
            }]
        );
        assert_eq!(
            decode_scancodes(&code_bytes(0x9e)),
            vec![KeyEvent {
                scancode: 0x1e,
                pressed: false
            }]
        );
        // right ctrl release: 0xE0 | (0x9d << 8)
        assert_eq!(
            decode_scancodes(&code_bytes(0x9de0)),
            vec![KeyEvent {
                scancode: 0xe01d,
                pressed: false
            }]
        );
        // KEY_SCANCODE press+release of an extended key
        let v = decode_scancodes(&[0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(v.len(), 2);
        assert!(v[0].pressed && !v[1].pressed && v[1].scancode == 0xe048);
        assert_eq!(decode_scancodes(&[0xe0]).len(), 0);
        assert_eq!(decode_scancodes(&[0xe1, 0x1d, 0x45]).len(), 1);
    }
}
