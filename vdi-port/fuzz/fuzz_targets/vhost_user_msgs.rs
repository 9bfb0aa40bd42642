#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdi_port::fuzzing::vhost_user_msgs(data));
