#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spice_agent::fuzzing::daemon_core(data));
