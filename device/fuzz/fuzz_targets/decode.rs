//! Arbitrary guest memory and command-ring entries through every qxl-device decoder, and every
//! decoded draw through the renderer. Input format: `qxl_device::decode::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qxl_device::decode::fuzz::run(data);
});
