//! The base (all-channel) client message parser and the scancode decoder must never panic.
//! Input: mini header (type u16, size u32) then the body. Seeds: `corpus/client_base/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice_bridge::wire::base::BaseClientMessage;
use spice_bridge::wire::header::HeaderKind;

fuzz_target!(|data: &[u8]| {
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = BaseClientMessage::parse(hdr.msg_type, body);
    for e in spice_bridge::input::decode_scancodes(body) {
        assert!(
            e.scancode & 0x80 == 0,
            "release bit never leaks into the scancode"
        );
    }
});
