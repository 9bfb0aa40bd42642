//! virtio-input wire layout and Linux event codes (values from the virtio spec §5.8 and
//! `linux/input-event-codes.h`; numbers are facts, nothing here is copied code).

/// virtio device id of virtio-input.
pub const VIRTIO_ID_INPUT: u32 = 18;
/// Queue 0: device → guest events.
pub const EVENTQ: usize = 0;
/// Queue 1: guest → device status (LEDs).
pub const STATUSQ: usize = 1;
/// Number of queues.
pub const NUM_QUEUES: usize = 2;
/// Config space size: select, subsel, size, reserved\[5\], u\[128\].
pub const CONFIG_SIZE: usize = 136;
/// Offset of the union in config space.
pub const CONFIG_UNION_OFFSET: usize = 8;
/// Size of the config union.
pub const CONFIG_UNION_SIZE: usize = 128;
/// Bytes per virtio-input event.
pub const EVENT_SIZE: usize = 8;

/// Config select: device name string.
pub const CFG_ID_NAME: u8 = 0x01;
/// Config select: serial string.
pub const CFG_ID_SERIAL: u8 = 0x02;
/// Config select: bustype, vendor, product, version (le16 each).
pub const CFG_ID_DEVIDS: u8 = 0x03;
/// Config select: input property bitmap.
pub const CFG_PROP_BITS: u8 = 0x10;
/// Config select: event code bitmap for event type `subsel`.
pub const CFG_EV_BITS: u8 = 0x11;
/// Config select: absolute axis `subsel` info (min, max, fuzz, flat, res as le32).
pub const CFG_ABS_INFO: u8 = 0x12;

/// Event types.
pub const EV_SYN: u16 = 0x00;
/// Key / button event.
pub const EV_KEY: u16 = 0x01;
/// Relative axis event.
pub const EV_REL: u16 = 0x02;
/// Absolute axis event.
pub const EV_ABS: u16 = 0x03;
/// Miscellaneous event.
pub const EV_MSC: u16 = 0x04;
/// LED event.
pub const EV_LED: u16 = 0x11;
/// Autorepeat event.
pub const EV_REP: u16 = 0x14;

/// EV_SYN code closing a report.
pub const SYN_REPORT: u16 = 0;

/// Relative axes.
pub const REL_X: u16 = 0x00;
/// Relative Y.
pub const REL_Y: u16 = 0x01;
/// Horizontal wheel.
pub const REL_HWHEEL: u16 = 0x06;
/// Vertical wheel.
pub const REL_WHEEL: u16 = 0x08;

/// Absolute X.
pub const ABS_X: u16 = 0x00;
/// Absolute Y.
pub const ABS_Y: u16 = 0x01;
/// Largest tablet coordinate (range 0..=ABS_MAX_COORD).
pub const ABS_MAX_COORD: u32 = 0x7fff;

/// Mouse buttons.
pub const BTN_LEFT: u16 = 0x110;
/// Right button.
pub const BTN_RIGHT: u16 = 0x111;
/// Middle button.
pub const BTN_MIDDLE: u16 = 0x112;
/// Side button.
pub const BTN_SIDE: u16 = 0x113;
/// Extra button.
pub const BTN_EXTRA: u16 = 0x114;

/// Num Lock LED.
pub const LED_NUML: u16 = 0x00;
/// Caps Lock LED.
pub const LED_CAPSL: u16 = 0x01;
/// Scroll Lock LED.
pub const LED_SCROLLL: u16 = 0x02;

/// Autorepeat delay code.
pub const REP_DELAY: u16 = 0x00;
/// Autorepeat period code.
pub const REP_PERIOD: u16 = 0x01;

/// Bus type reported in ID_DEVIDS (BUS_VIRTUAL).
pub const BUS_VIRTUAL: u16 = 0x06;

/// One virtio-input event (8 bytes on the wire: le16 type, le16 code, le32 value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputEvent {
    /// Event type (`EV_*`).
    pub type_: u16,
    /// Event code (key, axis, LED...).
    pub code: u16,
    /// Value (1 press / 0 release, coordinate, delta...).
    pub value: u32,
}

impl InputEvent {
    /// EV_SYN / SYN_REPORT.
    pub const SYN: InputEvent = InputEvent {
        type_: EV_SYN,
        code: SYN_REPORT,
        value: 0,
    };

    /// A key or button press (`pressed`) or release.
    pub const fn key(code: u16, pressed: bool) -> Self {
        InputEvent {
            type_: EV_KEY,
            code,
            value: pressed as u32,
        }
    }

    /// A relative motion of `delta` on `axis`.
    pub const fn rel(axis: u16, delta: i32) -> Self {
        InputEvent {
            type_: EV_REL,
            code: axis,
            value: delta as u32,
        }
    }

    /// An absolute position `value` on `axis`.
    pub const fn abs(axis: u16, value: u32) -> Self {
        InputEvent {
            type_: EV_ABS,
            code: axis,
            value,
        }
    }

    /// Wire encoding.
    pub fn to_bytes(self) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[0..2].copy_from_slice(&self.type_.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    /// Decodes the wire encoding.
    pub fn from_bytes(b: [u8; EVENT_SIZE]) -> Self {
        InputEvent {
            type_: u16::from_le_bytes([b[0], b[1]]),
            code: u16::from_le_bytes([b[2], b[3]]),
            value: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}
