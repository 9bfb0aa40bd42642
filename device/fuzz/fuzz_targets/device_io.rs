//! The device core as a state machine: arbitrary bytes become a sequence of hostile guest
//! actions (I/O ports, RAM-header and ring scribbles, ring entries, config space, VBE,
//! client monitors, release GC, worker runs) against a real `QxlDevice`; afterwards a RESET
//! and re-probe must give a working device. Input format: `qxl_device::testing::run_guest_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qxl_device::testing::run_guest_ops(qxl_device::testing::small_config(), data);
});
