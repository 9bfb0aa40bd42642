//! The display-channel client message parser and the data-header decoders must never panic on any
//! bytes. Input: mini header (type u16, size u32) then the body. Seeds: `corpus/client_display/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice_bridge::wire::display::DisplayClientMessage;
use spice_bridge::wire::header::HeaderKind;

fuzz_target!(|data: &[u8]| {
    let _ = HeaderKind::Full.decode(data.get(..18).unwrap_or(data));
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = DisplayClientMessage::parse(hdr.msg_type, body);
});
