#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdi_port::fuzzing::console_queues(data));
