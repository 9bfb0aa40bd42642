//! PC/XT scancode set 1 → Linux key codes.
//!
//! Scancodes use the convention of the project's Spice server (`spice_bridge::input::KeyEvent`):
//! a `u16` make code without the release bit, with 0xE0-prefixed keys carrying `0xe0` in the
//! high byte (`0xe01d` is right Ctrl) and Pause as `0xe11d`. Key code values are those of
//! `linux/input-event-codes.h`; the scancode assignments are the published PC keyboard set-1
//! table (including the Microsoft multimedia extensions).

/// Linux key codes used by the table (values from `linux/input-event-codes.h`).
pub mod keys {
    #![allow(missing_docs)]
    pub const KEY_KPENTER: u16 = 96;
    pub const KEY_RIGHTCTRL: u16 = 97;
    pub const KEY_KPSLASH: u16 = 98;
    pub const KEY_SYSRQ: u16 = 99;
    pub const KEY_RIGHTALT: u16 = 100;
    pub const KEY_HOME: u16 = 102;
    pub const KEY_UP: u16 = 103;
    pub const KEY_PAGEUP: u16 = 104;
    pub const KEY_LEFT: u16 = 105;
    pub const KEY_RIGHT: u16 = 106;
    pub const KEY_END: u16 = 107;
    pub const KEY_DOWN: u16 = 108;
    pub const KEY_PAGEDOWN: u16 = 109;
    pub const KEY_INSERT: u16 = 110;
    pub const KEY_DELETE: u16 = 111;
    pub const KEY_MUTE: u16 = 113;
    pub const KEY_VOLUMEDOWN: u16 = 114;
    pub const KEY_VOLUMEUP: u16 = 115;
    pub const KEY_POWER: u16 = 116;
    pub const KEY_KPEQUAL: u16 = 117;
    pub const KEY_PAUSE: u16 = 119;
    pub const KEY_KPCOMMA: u16 = 121;
    pub const KEY_HANGEUL: u16 = 122;
    pub const KEY_HANJA: u16 = 123;
    pub const KEY_YEN: u16 = 124;
    pub const KEY_LEFTMETA: u16 = 125;
    pub const KEY_RIGHTMETA: u16 = 126;
    pub const KEY_COMPOSE: u16 = 127;
    pub const KEY_STOP: u16 = 128;
    pub const KEY_CALC: u16 = 140;
    pub const KEY_SLEEP: u16 = 142;
    pub const KEY_WAKEUP: u16 = 143;
    pub const KEY_MAIL: u16 = 155;
    pub const KEY_BOOKMARKS: u16 = 156;
    pub const KEY_COMPUTER: u16 = 157;
    pub const KEY_BACK: u16 = 158;
    pub const KEY_FORWARD: u16 = 159;
    pub const KEY_NEXTSONG: u16 = 163;
    pub const KEY_PLAYPAUSE: u16 = 164;
    pub const KEY_PREVIOUSSONG: u16 = 165;
    pub const KEY_STOPCD: u16 = 166;
    pub const KEY_HOMEPAGE: u16 = 172;
    pub const KEY_REFRESH: u16 = 173;
    pub const KEY_F13: u16 = 183;
    pub const KEY_F24: u16 = 194;
    pub const KEY_SEARCH: u16 = 217;
    pub const KEY_MEDIA: u16 = 226;
    pub const KEY_RO: u16 = 89;
    pub const KEY_HENKAN: u16 = 92;
    pub const KEY_KATAKANAHIRAGANA: u16 = 93;
    pub const KEY_MUHENKAN: u16 = 94;
    pub const KEY_A: u16 = 30;
    pub const KEY_LEFTSHIFT: u16 = 42;
    pub const KEY_KP7: u16 = 71;
    pub const KEY_CAPSLOCK: u16 = 58;
    pub const KEY_NUMLOCK: u16 = 69;
    pub const KEY_SCROLLLOCK: u16 = 70;
}

use keys::*;

/// Maps a set-1 make code (Spice convention, see the module docs) to a Linux key code.
/// Returns `None` for codes with no key (including the 0xE0 0x2A/0xAA fake shifts).
pub fn set1_to_linux(scancode: u16) -> Option<u16> {
    let code = scancode & 0xff;
    match scancode >> 8 {
        0x00 => plain(code),
        0xe0 => extended(code),
        0xe1 if code == 0x1d => Some(KEY_PAUSE),
        _ => None,
    }
}

fn plain(code: u16) -> Option<u16> {
    Some(match code {
        // Set 1 codes 0x01..=0x58 equal the Linux key codes 1..=88 (Esc..F12), except 0x54,
        // which a keyboard sends for Alt+PrintScreen (SysRq).
        0x54 => KEY_SYSRQ,
        0x01..=0x58 => code,
        0x59 => KEY_KPEQUAL,
        // F13..F23 at 0x64..=0x6e, F24 at 0x76.
        0x64..=0x6e => KEY_F13 + (code - 0x64),
        0x76 => KEY_F24,
        0x70 => KEY_KATAKANAHIRAGANA,
        0x73 => KEY_RO,
        0x79 => KEY_HENKAN,
        0x7b => KEY_MUHENKAN,
        0x7d => KEY_YEN,
        0x7e => KEY_KPCOMMA,
        0x71 | 0xf1 => KEY_HANJA,
        0x72 | 0xf2 => KEY_HANGEUL,
        _ => return None,
    })
}

fn extended(code: u16) -> Option<u16> {
    Some(match code {
        0x10 => KEY_PREVIOUSSONG,
        0x19 => KEY_NEXTSONG,
        0x1c => KEY_KPENTER,
        0x1d => KEY_RIGHTCTRL,
        0x20 => KEY_MUTE,
        0x21 => KEY_CALC,
        0x22 => KEY_PLAYPAUSE,
        0x24 => KEY_STOPCD,
        0x2e => KEY_VOLUMEDOWN,
        0x30 => KEY_VOLUMEUP,
        0x32 => KEY_HOMEPAGE,
        0x35 => KEY_KPSLASH,
        0x37 => KEY_SYSRQ,
        0x38 => KEY_RIGHTALT,
        // Ctrl+Break.
        0x46 => KEY_PAUSE,
        0x47 => KEY_HOME,
        0x48 => KEY_UP,
        0x49 => KEY_PAGEUP,
        0x4b => KEY_LEFT,
        0x4d => KEY_RIGHT,
        0x4f => KEY_END,
        0x50 => KEY_DOWN,
        0x51 => KEY_PAGEDOWN,
        0x52 => KEY_INSERT,
        0x53 => KEY_DELETE,
        0x5b => KEY_LEFTMETA,
        0x5c => KEY_RIGHTMETA,
        0x5d => KEY_COMPOSE,
        0x5e => KEY_POWER,
        0x5f => KEY_SLEEP,
        0x63 => KEY_WAKEUP,
        0x65 => KEY_SEARCH,
        0x66 => KEY_BOOKMARKS,
        0x67 => KEY_REFRESH,
        0x68 => KEY_STOP,
        0x69 => KEY_FORWARD,
        0x6a => KEY_BACK,
        0x6b => KEY_COMPUTER,
        0x6c => KEY_MAIL,
        0x6d => KEY_MEDIA,
        _ => return None,
    })
}

/// Every scancode the table maps, in ascending order (for building EV_BITS and for tests).
pub fn mapped_scancodes() -> impl Iterator<Item = u16> {
    (0x0000u16..=0x00ff)
        .chain(0xe000..=0xe0ff)
        .chain(std::iter::once(0xe11d))
        .filter(|&s| set1_to_linux(s).is_some())
}
