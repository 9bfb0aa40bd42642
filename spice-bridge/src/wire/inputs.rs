//! Inputs channel messages (reference sheet §5).

use super::{message, wire_struct, Reader, WireError};

/// Inputs capability: KEY_SCANCODE.
pub const CAP_KEY_SCANCODE: u32 = 0;
/// Motion messages per MOUSE_MOTION_ACK (`SPICE_INPUT_MOTION_ACK_BUNCH`).
pub const MOTION_ACK_BUNCH: u32 = 4;
/// Largest KEY_SCANCODE body accepted (our bound).
pub const SCANCODE_MAX: usize = 64;

/// Client → server ids.
pub mod client_id {
    /// KEY_DOWN
    pub const KEY_DOWN: u16 = 101;
    /// KEY_UP
    pub const KEY_UP: u16 = 102;
    /// KEY_MODIFIERS
    pub const KEY_MODIFIERS: u16 = 103;
    /// KEY_SCANCODE
    pub const KEY_SCANCODE: u16 = 104;
    /// MOUSE_MOTION
    pub const MOUSE_MOTION: u16 = 111;
    /// MOUSE_POSITION
    pub const MOUSE_POSITION: u16 = 112;
    /// MOUSE_PRESS
    pub const MOUSE_PRESS: u16 = 113;
    /// MOUSE_RELEASE
    pub const MOUSE_RELEASE: u16 = 114;
}

wire_struct! {
    /// Server INPUTS_INIT (101).
    pub struct InputsInit {
        /// guest lock-key state (SCROLL 1, NUM 2, CAPS 4)
        pub keyboard_modifiers: u16,
    }
}
message!(InputsInit, 101);

wire_struct! {
    /// KEY_MODIFIERS (server 102 / client 103).
    pub struct KeyModifiers {
        /// lock-key bits
        pub modifiers: u16,
    }
}
message!(KeyModifiers, 102);

wire_struct! {
    /// Server MOUSE_MOTION_ACK (111).
    pub struct MouseMotionAck {}
}
message!(MouseMotionAck, 111);

wire_struct! {
    /// Client KEY_DOWN / KEY_UP: scancode bytes packed LSB first.
    pub struct KeyCode {
        /// packed set-1 bytes
        pub code: u32,
    }
}

wire_struct! {
    /// Client MOUSE_MOTION (111), 10 bytes.
    pub struct MouseMotion {
        /// relative x
        pub dx: i32,
        /// relative y
        pub dy: i32,
        /// buttons after the event
        pub buttons_state: u16,
    }
}

wire_struct! {
    /// Client MOUSE_POSITION (112), 11 bytes.
    pub struct MousePosition {
        /// absolute x
        pub x: u32,
        /// absolute y
        pub y: u32,
        /// buttons after the event
        pub buttons_state: u16,
        /// display channel id
        pub display_id: u8,
    }
}

wire_struct! {
    /// Client MOUSE_PRESS / MOUSE_RELEASE, 3 bytes.
    pub struct MouseButtonMsg {
        /// button (LEFT 1, MIDDLE 2, RIGHT 3, UP 4, DOWN 5, SIDE 6, EXTRA 7)
        pub button: u8,
        /// buttons after the event
        pub buttons_state: u16,
    }
}

/// An inputs-channel message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsClientMessage {
    /// KEY_DOWN
    KeyDown(KeyCode),
    /// KEY_UP
    KeyUp(KeyCode),
    /// KEY_MODIFIERS
    KeyModifiers(KeyModifiers),
    /// KEY_SCANCODE: raw set-1 bytes
    KeyScancode(Vec<u8>),
    /// MOUSE_MOTION
    MouseMotion(MouseMotion),
    /// MOUSE_POSITION
    MousePosition(MousePosition),
    /// MOUSE_PRESS
    MousePress(MouseButtonMsg),
    /// MOUSE_RELEASE
    MouseRelease(MouseButtonMsg),
}

fn scancode_bytes(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    let b = r.rest();
    if b.is_empty() || b.len() > SCANCODE_MAX {
        return Err(WireError::BadValue {
            what: "scancode length",
            value: b.len() as u64,
        });
    }
    Ok(b.to_vec())
}

impl InputsClientMessage {
    /// Parses an inputs-channel client message.
    pub fn parse(msg_type: u16, body: &[u8]) -> Result<Self, WireError> {
        use super::decode_exact as d;
        use client_id::*;
        match msg_type {
            KEY_DOWN => d(body).map(Self::KeyDown),
            KEY_UP => d(body).map(Self::KeyUp),
            KEY_MODIFIERS => d(body).map(Self::KeyModifiers),
            KEY_SCANCODE => scancode_bytes(&mut Reader::new(body)).map(Self::KeyScancode),
            MOUSE_MOTION => d(body).map(Self::MouseMotion),
            MOUSE_POSITION => d(body).map(Self::MousePosition),
            MOUSE_PRESS => d(body).map(Self::MousePress),
            MOUSE_RELEASE => d(body).map(Self::MouseRelease),
            _ => Err(WireError::UnknownMessage {
                channel_type: 3,
                msg_type,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;

    fn parse_all_prefixes(t: u16, b: &[u8]) {
        assert!(InputsClientMessage::parse(t, b).is_ok());
        for cut in 0..b.len() {
            assert!(
                InputsClientMessage::parse(t, &b[..cut]).is_err(),
                "{t} {cut}"
            );
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(InputsClientMessage::parse(t, &long).is_err());
    }

    #[test]
    fn inputs_messages_round_trip_and_truncations_fail() {
        round_trip(&InputsInit {
            keyboard_modifiers: 2,
        });
        round_trip(&MouseMotionAck {});
        let k = round_trip(&KeyModifiers { modifiers: 4 });
        parse_all_prefixes(client_id::KEY_MODIFIERS, &k);
        let k = round_trip(&KeyCode { code: 0x1e });
        parse_all_prefixes(client_id::KEY_DOWN, &k);
        parse_all_prefixes(client_id::KEY_UP, &k);
        let m = round_trip(&MouseMotion {
            dx: -3,
            dy: 4,
            buttons_state: 1,
        });
        assert_eq!(m.len(), 10);
        parse_all_prefixes(client_id::MOUSE_MOTION, &m);
        let p = round_trip(&MousePosition {
            x: 10,
            y: 20,
            buttons_state: 0,
            display_id: 0,
        });
        assert_eq!(p.len(), 11);
        parse_all_prefixes(client_id::MOUSE_POSITION, &p);
        let b = round_trip(&MouseButtonMsg {
            button: 1,
            buttons_state: 1,
        });
        parse_all_prefixes(client_id::MOUSE_PRESS, &b);
        parse_all_prefixes(client_id::MOUSE_RELEASE, &b);
    }

    #[test]
    fn scancode_bounds() {
        assert!(InputsClientMessage::parse(client_id::KEY_SCANCODE, &[]).is_err());
        assert!(InputsClientMessage::parse(client_id::KEY_SCANCODE, &[0x1e, 0x9e]).is_ok());
        assert!(InputsClientMessage::parse(client_id::KEY_SCANCODE, &[1; 65]).is_err());
        assert!(InputsClientMessage::parse(7, &[]).is_err());
    }
}
